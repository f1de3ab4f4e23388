"""Run the fake Kubernetes API on its own: ``python -m tests.fakes.kube --port N [--token T]``.

Prints its URL, then serves until interrupted. Without ``--registry`` every image "exists";
with it, pods start only for images that registry holds (password from
FAKE_KUBE_REGISTRY_PASSWORD, so it never shows in a process list).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from tests.fakes.kube import FakeKube, registry_lookup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.kube", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--token", help="require this bearer token (default: no authentication)")
    parser.add_argument("--registry", metavar="URL", help="v2 registry that decides which images exist")
    parser.add_argument("--registry-user", default="", help="user for that registry")
    parser.add_argument("--crash", action="append", default=[], metavar="IMAGE",
                        help="pods of this image crash-loop (repeatable)")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a self-signed certificate")
    parser.add_argument("--kubeconfig", metavar="FILE", help="also write a kubeconfig for it here")
    args = parser.parse_args(argv)
    lookup = (registry_lookup(args.registry, args.registry_user, os.environ.get("FAKE_KUBE_REGISTRY_PASSWORD", ""))
              if args.registry else None)
    fake = FakeKube(image_exists=lookup, token=args.token, port=args.port, tls=args.tls)
    fake.crash_images.update(args.crash)
    fake.start()
    if args.kubeconfig:
        from pathlib import Path

        fake.kubeconfig(Path(args.kubeconfig))
    print(fake.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
