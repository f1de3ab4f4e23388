"""The sandbox the smoke test runs untrusted code in: pull-request code runs on the build's engine.

The container gets no Linux capabilities, cannot gain privileges (setuid binaries do nothing),
has a memory and a process limit, and sits alone on an internal network of its own: it reaches
nothing (no registry, no metadata service, no other container, no internet), and only the host
reaches it, at its address on that network, which is all the probe needs.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

MEMORY_LIMIT = "512m"
PIDS_LIMIT = 256
RUN_LIMITS = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"], "mem_limit": MEMORY_LIMIT,
              "memswap_limit": MEMORY_LIMIT, "pids_limit": PIDS_LIMIT}


@contextlib.contextmanager
def network(client: Any, name: str, labels: dict[str, str]) -> Iterator[str]:
    """Create an internal bridge network for one container; remove it afterwards."""
    import docker.errors

    made = client.networks.create(name, driver="bridge", internal=True, labels=labels)
    try:
        yield name
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            made.remove()


def address(container: Any, network_name: str) -> str:
    """Return the container's address on its sandbox network ("" when it has none: it stopped)."""
    networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return (networks.get(network_name) or {}).get("IPAddress") or ""
