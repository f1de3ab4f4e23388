"""The credentials Jenkins declares (JCasC) against the ones the Jenkinsfile and jobs/ use.

Every credential id a job or the Jenkinsfile names must be declared in
``docker/jenkins/casc.yaml``, so a fresh Jenkins runs the first master build without anyone
clicking a credential together; and every declared id must be used, so no secret is kept in
Jenkins for nothing. ``pinotage jobs check`` reports both, one line each.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable, Iterator

CASC_FILE = "docker/jenkins/casc.yaml"  # from the repository root
_JENKINSFILE_ID = re.compile(r"""\bcredentialsId\s*:\s*(['"])(?P<id>[^'"]+)\1""")


def declared(casc: dict) -> list[str]:
    """List the ids of the credentials JCasC declares (``credentials.system.domainCredentials``)."""
    domains = (((casc or {}).get("credentials") or {}).get("system") or {}).get("domainCredentials") or []
    ids = []
    for domain in domains:
        for entry in domain.get("credentials") or ():
            for body in entry.values():
                if isinstance(body, dict) and body.get("id"):
                    ids.append(str(body["id"]))
    return ids


def used_in_jenkinsfile(text: str, name: str) -> list[tuple[str, str]]:
    """List (id, "Jenkinsfile:line") for every ``credentialsId: '...'`` in a pipeline script."""
    return [(m.group("id"), f"{name}:{text.count(chr(10), 0, m.start()) + 1}") for m in _JENKINSFILE_ID.finditer(text)]


def used_in_job(root: ET.Element, where: str) -> list[tuple[str, str]]:
    """List (id, where) for every credential id element of a job's XML."""
    return [((e.text or "").strip(), where) for e in root.iter()
            if e.tag.lower().endswith("credentialsid") and (e.text or "").strip()]


def used_in_casc(casc: Any) -> Iterator[str]:
    """Yield the credential ids JCasC itself uses (a webhook secret, a cloud's credential)."""
    if isinstance(casc, dict):
        for key, value in casc.items():
            if key == "credentialsId" and isinstance(value, str):
                yield value
            else:
                yield from used_in_casc(value)
    elif isinstance(casc, list):
        for item in casc:
            yield from used_in_casc(item)


def cross_check(casc_path: Path, uses: Iterable[tuple[str, str]]) -> list[str]:
    """Return one problem per credential used but not declared, and per credential declared but not used."""
    import yaml

    try:
        casc = yaml.safe_load(casc_path.read_text())
    except (OSError, yaml.YAMLError) as e:
        return [f"{casc_path}: cannot read the JCasC file ({type(e).__name__})"]
    ids = declared(casc)
    uses = list(uses)
    problems = [f"{where}: credential {cid!r} is not declared in {casc_path} (credentials: JCasC must create it)"
                for cid, where in uses if cid not in ids]
    used = {cid for cid, _ in uses} | set(used_in_casc(casc))
    problems += [f"{casc_path}: credential {cid!r} is declared but neither the Jenkinsfile nor jobs/ uses it"
                 for cid in ids if cid not in used]
    return problems
