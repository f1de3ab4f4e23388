"""The image: bytes the app adds over its base, rebuild time after a slides-only change, push bytes.

Each row is measured side by side in one run, on the real engine and a real registry on loopback:

- bytes the app adds on top of its final-stage base, against a naive single-stage Dockerfile
  (``FROM`` the npm base, ``npm ci``, copy the slides, serve with reveal-md) on its base;
- rebuild after a slides-only change (cache warm) against a cold build (no cache), same Dockerfile;
- bytes a push uploads after a slides-only change against the first push of the whole image,
  counted by a proxy in front of the registry (tests/registry_proxy.py).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

from benchmarks import measure

ROOT = measure.ROOT
APP = ROOT / "docker" / "presentation"
NAIVE_DOCKERFILE = """\
FROM {base}
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=optional --no-audit --no-fund
COPY slides ./slides
ENV PORT=8080
CMD ["node_modules/.bin/reveal-md", "slides/pinotage.md", "--port", "8080", "--disable-auto-open"]
"""
MB = 1_000_000


def run(quick: bool) -> list[dict]:
    import docker

    sys.path.insert(0, str(ROOT))
    try:
        client = docker.from_env(timeout=900)
        client.ping()
    except Exception as e:  # the SDK raises several kinds when no engine answers
        why = f"no Docker engine ({type(e).__name__})"
        return [measure.not_measured(name, unit, goal, why) for name, unit, goal in ROWS]
    bases = _base_images()
    work = Path(tempfile.mkdtemp(prefix="pinotage-bench-image."))
    made: list[str] = []
    try:
        return [_size_row(client, bases, work, made),
                _rebuild_row(client, bases, work, made, quick),
                _push_row(client, bases, work, made)]
    finally:
        for ref in made:
            try:
                client.images.remove(ref, force=True)
            except docker.errors.NotFound:
                pass
        shutil.rmtree(work, ignore_errors=True)


ROWS = (("bytes the app adds over its final base (naive single-stage: over its npm base)", "MB", "≤ 1/10 of naive"),
        ("rebuild after a slides-only change (peer: cold build)", "s", "≤ 1/5 of cold"),
        ("push after a slides-only change (peer: first push of the whole image)", "MB", "≤ 1/5 of the peer: only the changed layer"))


def _base_images() -> tuple[str, str]:
    build, final = os.environ.get("PINOTAGE_IMAGE_BUILD_BASE"), os.environ.get("PINOTAGE_IMAGE_FINAL_BASE")
    if build and final:
        return build, final
    done = subprocess.run([str(ROOT / "scripts" / "base-image")], capture_output=True, text=True, check=True)
    refs = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return refs["build"], refs["runtime"]


def _config(bases: tuple[str, str], context: Path, repository: str, registry_url: str = ""):
    from pipeline import config as config_module

    return config_module.load(environ={}, cwd=str(context), overrides=[
        f"image.context={context}", f"image.repository={repository}", f"registry.url={registry_url}",
        f"image.build_base={bases[0]}", f"image.final_base={bases[1]}"])


def _context(commit: str = ""):
    from pipeline.context import BuildContext

    return BuildContext(commit=commit or secrets.token_hex(20), branch="bench", event="branch")


def _copy_app(work: Path, name: str) -> Path:
    target = work / name
    shutil.copytree(APP, target, ignore=shutil.ignore_patterns("node_modules", "site"))
    return target


def _change_slides(app: Path) -> None:
    deck = app / "slides" / "pinotage.md"
    deck.write_text(deck.read_text() + f"\n---\n\n## Changed\n\n{secrets.token_hex(8)}\n")


def _size(client, ref: str) -> int:
    return int(client.images.get(ref).attrs["Size"])


def _size_row(client, bases, work, made) -> dict:
    from pipeline import image

    app = _copy_app(work, "size")
    config = _config(bases, app, "pinotage-bench/presentation")
    built = image.build(client, config, _context())
    made.extend(f"{built.name}:{tag}" for tag in built.tags)
    ours = _size(client, built.ref) - _size(client, bases[1])

    (app / "Dockerfile.naive").write_text(NAIVE_DOCKERFILE.format(base=bases[0]))
    naive_ref = "pinotage-bench/naive:latest"
    list(client.api.build(path=str(app), dockerfile="Dockerfile.naive", tag=naive_ref, rm=True, decode=True))
    made.append(naive_ref)
    theirs = _size(client, naive_ref) - _size(client, bases[0])
    note = (f"final image {_size(client, built.ref) / MB:.1f} MB on a {_size(client, bases[1]) / MB:.1f} MB base;"
            f" naive image {_size(client, naive_ref) / MB:.1f} MB on a {_size(client, bases[0]) / MB:.1f} MB base;"
            " n=1: sizes are the same each run")
    return measure.row(ROWS[0][0], round(ours / MB, 1), round(theirs / MB, 1), "MB", ROWS[0][2],
                       ours * 10 <= theirs, note)


def _rebuild_row(client, bases, work, made, quick) -> dict:
    from pipeline import image

    app = _copy_app(work, "rebuild")
    config = _config(bases, app, "pinotage-bench/rebuild")

    def warm() -> float:
        _change_slides(app)
        started = timeit.default_timer()
        built = image.build(client, config, _context())
        took = timeit.default_timer() - started
        made.extend(f"{built.name}:{tag}" for tag in built.tags)
        return took

    def cold() -> float:
        ref = f"pinotage-bench/cold:{secrets.token_hex(4)}"
        args = image.build_args(config, _context())
        started = timeit.default_timer()
        events = client.api.build(path=str(app), tag=ref, buildargs=args, nocache=True, rm=True, forcerm=True,
                                  decode=True)
        image.read_build_stream(events)
        took = timeit.default_timer() - started
        made.append(ref)
        return took

    warm()  # fills the cache this row relies on (the npm layer), whatever ran before
    ours, theirs = measure.alternate(warm, cold, runs=1 if quick else 3, warmup=0)
    o, t = measure.median(ours), measure.median(theirs)
    return measure.row(ROWS[1][0], round(o, 2), round(t, 2), "s", ROWS[1][2], o * 5 <= t,
                       f"rebuild {measure.spread(ours, 's')}; cold {measure.spread(theirs, 's')}; alternated after one "
                       f"warm rebuild; n=3, not 5: each cold build takes over half a minute")


def _push_row(client, bases, work, made) -> dict:
    from pipeline import image
    from pipeline.registry import Credentials
    from tests.conftest import start_registry
    from tests.registry_proxy import FaultProxy

    for tool in ("docker-registry", "htpasswd"):
        if not shutil.which(tool):
            return measure.not_measured(ROWS[2][0], "MB", ROWS[2][2], f"{tool} is not installed")
    password = secrets.token_urlsafe(18)
    (work / "registry").mkdir()
    process, registry = start_registry(work / "registry", user="bench", password=password)
    try:
        with FaultProxy(registry.url) as proxy:
            app = _copy_app(work, "push")
            config = _config(bases, app, "pinotage-bench/push", proxy.url)
            credentials = Credentials("bench", password, "bench")

            def build_and_push() -> tuple[int, int]:
                built = image.build(client, config, _context())
                made.extend(f"{built.name}:{tag}" for tag in built.tags)
                before = proxy.uploaded_bytes()
                image.push(client, config, built, credentials)
                slides_layer = next(h["Size"] for h in client.images.get(built.ref).history() if h["Size"] > 0)
                return proxy.uploaded_bytes() - before, slides_layer

            whole, _ = build_and_push()
            _change_slides(app)
            changed, slides_layer = build_and_push()
    finally:
        process.terminate()
        process.wait(10)
    # Uploads are gzipped; the manifest and config add a few KB.
    met = changed <= slides_layer + 100_000 and changed * 5 < whole
    note = (f"the slides layer is {slides_layer / MB:.1f} MB uncompressed; bytes counted by a proxy; n=1: the bytes "
            "are the same each run")
    if not met:
        note += f"; gap: {changed / MB:.2f} MB pushed" + (" (more than the slides layer)"
                                                          if changed > slides_layer + 100_000 else "")
    return measure.row(ROWS[2][0], round(changed / MB, 2), round(whole / MB, 1), "MB", ROWS[2][2], met, note)


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
