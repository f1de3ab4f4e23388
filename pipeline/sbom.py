"""The app's software bill of materials: a CycloneDX SBOM of its npm dependencies, per build.

The build writes it from the app's lockfile with the CycloneDX tool from the npm registry
(``cyclonedx-npm``, installed by scripts/test and scripts/demo under ``tools/cyclonedx``, or on
PATH), reproducibly, into the state folder under its own digest; the image carries that digest as
the label ``SBOM_LABEL``, and the ledger record keeps the digest and the packages the image ships
(the SBOM's components that are not development-only), so ``pinotage history --package`` finds
the deploys that shipped a package and ``pinotage sbom`` prints a deployed revision's SBOM.

The tool's output is a function of its inputs alone (``--output-reproducible``): the app's
``package.json`` and lockfile, and the tool itself. So a build whose inputs were seen before
reuses the SBOM kept for them, checked against its digest, instead of running the tool again (a
second of Node.js on every slides-only change); any doubt (no record, a changed or missing file)
runs the tool. The user's cache (``files.cache_dir``) keeps each SBOM under its inputs too, so a
new state folder on the same machine (another checkout, a clean workspace) reuses it as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from pipeline import files
from pipeline.config import tool_environ
from pipeline.errors import BadInput, PinotageError
from pipeline.ledger import DeployOutcome
from pipeline.shell import SubprocessShell

SBOM_LABEL = "org.pinotage.sbom.digest"
LOCAL_TOOL = "tools/cyclonedx/node_modules/.bin/cyclonedx-npm"  # under the repository, made by scripts/lib.sh
TOOL = "cyclonedx-npm"
SBOM_TIMEOUT_S = 180
DEV_PROPERTY = "cdx:npm:package:development"


@dataclasses.dataclass(frozen=True)
class Sbom:
    """An SBOM written to the state folder: its digest, its file, and the packages the image ships."""

    digest: str  # "sha256:…" of the file's bytes
    path: str
    packages: tuple[str, ...]  # "name@version", sorted
    reused: bool = False  # kept from an earlier build of the same inputs: the tool did not run


def components(document: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """Return (name, version, development-only) for every component of a CycloneDX document."""
    found = []
    for component in document.get("components", []):
        name = f"{component['group']}/{component['name']}" if component.get("group") else component["name"]
        dev = any(p.get("name") == DEV_PROPERTY and p.get("value") == "true"
                  for p in component.get("properties", []))
        found.append((name, component.get("version", ""), dev))
    return found


def shipped(document: Mapping[str, Any]) -> tuple[str, ...]:
    """Return the "name@version" of every component the image ships (not development-only)."""
    return tuple(sorted({f"{name}@{version}" for name, version, dev in components(document) if not dev}))


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def folder(config: Any) -> Path:
    """Return where SBOMs are kept: the state folder's ``sbom``."""
    return config.path(config.state_dir) / "sbom"


def find_tool(config: Any, environ: Mapping[str, str]) -> str:
    """Return the CycloneDX tool: the app repository's install, then Pinotage's own checkout's, then PATH."""
    for local in (config.path(LOCAL_TOOL), Path(__file__).resolve().parents[1] / LOCAL_TOOL):
        if local.is_file():
            return str(local.resolve())  # the tool runs in a folder of its own
    on_path = shutil.which(TOOL, path=environ.get("PATH"))
    if on_path:
        return on_path
    raise BadInput(f"{TOOL} is not installed: the build writes the app's SBOM with it",
                   hint="scripts/test and scripts/demo install it (npm ci --prefix tools/cyclonedx)")


def generate(config: Any, environ: Mapping[str, str], *, progress: Callable[[str], None] | None = None) -> Sbom:
    """Write the app's SBOM from its lockfile (all of it, development packages marked); return it."""
    app = config.path(config.image.context)
    for name in ("package.json", "package-lock.json"):
        if not (app / name).is_file():
            raise BadInput(f"image.context: {app / name}: no such file (the SBOM is made from the app's lockfile)")
    tool = find_tool(config, environ)
    env = {**tool_environ(environ), "npm_config_update_notifier": "false"}
    env.pop("NODE_ENV", None)  # "production" would make the tool omit development packages
    inputs = inputs_key(app, tool, env)
    kept = _kept_for(config, inputs) or _cached_for(config, environ, inputs)
    if kept is not None:
        return kept
    with tempfile.TemporaryDirectory(prefix="pinotage-sbom-") as work:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(app / name, Path(work, name))
        out = Path(work, "sbom.cdx.json")
        SubprocessShell(cwd=work, env=env, progress=progress).run(
            [tool, "--package-lock-only", "--flatten-components", "--output-reproducible", "--output-format", "JSON",
             "--output-file", str(out), "package.json"], timeout_s=SBOM_TIMEOUT_S)
        data = out.read_bytes()
    _cache(environ, inputs, data)
    return _keep(config, inputs, data, json.loads(data))


def inputs_key(app: Path, tool: str, env: Mapping[str, str]) -> str:
    """Return a digest of what the tool's output depends on: the app's two files, the tool (its
    package.json, the script), the node and npm it runs with, and the npm settings in its environment."""
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update(name.encode() + b"\0" + (app / name).read_bytes() + b"\0")
    script = Path(tool).resolve()
    for package in script.parents:  # the tool's version is in its package's package.json
        if (package / "package.json").is_file():
            h.update((package / "package.json").read_bytes())
            break
    for program in (str(script), shutil.which("node", path=env.get("PATH")), shutil.which("npm", path=env.get("PATH"))):
        if program:
            real = Path(program).resolve()
            stat = real.stat()
            h.update(f"{real}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    for name in sorted(k for k in env if k.lower().startswith("npm_config_")):
        h.update(f"{name}={env[name]}\0".encode())
    rc = Path(env.get("NPM_CONFIG_USERCONFIG") or env.get("npm_config_userconfig") or Path(env.get("HOME", "/"), ".npmrc"))
    if rc.is_file():  # the user's npm settings
        h.update(rc.read_bytes())
    return h.hexdigest()


def _kept_path(config: Any, digest: str) -> Path:
    return folder(config) / f"{digest.removeprefix('sha256:')}.cdx.json"


def _keep(config: Any, inputs: str, data: bytes, document: Mapping[str, Any], *, reused: bool = False) -> Sbom:
    """Keep the SBOM in the state folder under its digest, and which inputs it was made from."""
    digest = digest_of(data)
    path = _kept_path(config, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    files.write_atomic(folder(config) / "inputs" / inputs, (digest + "\n").encode())
    return Sbom(digest=digest, path=str(path), packages=shipped(document), reused=reused)


def _kept_for(config: Any, inputs: str) -> Sbom | None:
    """Return the SBOM written before from the same inputs, if it is still there with its digest."""
    try:
        digest = (folder(config) / "inputs" / inputs).read_text().strip()
        data = load(config, digest)
    except (OSError, PinotageError):
        return None
    return Sbom(digest=digest, path=str(_kept_path(config, digest)), packages=shipped(json.loads(data)), reused=True)


def _cached_for(config: Any, environ: Mapping[str, str], inputs: str) -> Sbom | None:
    """Return the SBOM of the same inputs from the user's cache (another state folder wrote it), kept here too."""
    cache = files.cache_dir(environ)
    try:
        data = (cache / "sbom" / f"{inputs}.cdx.json").read_bytes() if cache else b""
        document = json.loads(data) if data else None
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("bomFormat") != "CycloneDX":
        return None
    return _keep(config, inputs, data, document, reused=True)


def _cache(environ: Mapping[str, str], inputs: str, data: bytes) -> None:
    """Keep the SBOM in the user's cache under its inputs, for other state folders (best effort)."""
    cache = files.cache_dir(environ)
    if cache is not None:
        with contextlib.suppress(OSError):
            files.write_atomic(cache / "sbom" / f"{inputs}.cdx.json", data)


def load(config: Any, digest: str) -> bytes:
    """Read a kept SBOM by digest, checking that its bytes still have that digest."""
    path = _kept_path(config, digest)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PinotageError(f"the SBOM {digest} is not in {path.parent}",
                            hint="it is kept where the build ran (Jenkins archives it with the build)") from e
    if digest_of(data) != digest:
        raise PinotageError(f"{path}: its digest is {digest_of(data)}, not {digest}", hint="the file was changed")
    return data


def parse_package(text: str) -> tuple[str, str]:
    """Split NAME[@VERSION] (a scoped name keeps its leading '@'); the version is "" when not given."""
    at = text.rfind("@")
    if at <= 0:
        name, version = text, ""
    else:
        name, version = text[:at], text[at + 1:]
    if name.strip("@") == "" or (at > 0 and not version):
        raise BadInput(f"--package: expected NAME or NAME@VERSION, got {text!r}")
    return name, version


def ships(packages: tuple[str, ...] | list[str], name: str, version: str) -> bool:
    """Tell whether a record's packages include NAME (at VERSION, when given)."""
    return f"{name}@{version}" in packages if version else bool(shipped_as(packages, name))


def shipped_as(packages: tuple[str, ...] | list[str], name: str) -> list[str]:
    """Return the "name@version" entries of a record's packages that are NAME."""
    return [p for p in packages if p.rsplit("@", 1)[0] == name]


def same_revision(record: Any, revision: str) -> bool:
    """Tell whether a ledger record is of REVISION: the target's revision, or a commit (prefix of 7+)."""
    return record.revision == revision or (len(revision) >= 7 and record.commit.startswith(revision))


def pick(records: list[Any], revision: str | None) -> Any:
    """Return the newest deployed record of REVISION (None: the newest deployed one) that has an SBOM."""
    deployed = [r for r in records if r.outcome == DeployOutcome.DEPLOYED and (revision is None or same_revision(r, revision))]
    if not deployed:
        raise BadInput(f"no deploy of revision {revision!r} in the ledger" if revision else "no deploy in the ledger",
                       hint="see 'pinotage history'")
    record = deployed[-1]
    if not record.sbom:
        raise PinotageError(f"the deploy of {record.commit[:12]} recorded no SBOM",
                            hint="its image was found in the registry, or built before SBOMs were written")
    return record


def write_out(data: bytes, output: str | None) -> None:
    """Print the SBOM, or save it to a file."""
    if output:
        Path(output).write_bytes(data)
    else:
        text = data.decode("utf-8")  # CycloneDX JSON is UTF-8
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
