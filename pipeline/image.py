"""The image phases: tag policy, build, smoke test, push.

``pipeline/runner.py`` calls exactly these functions:

- ``tags_for(context, config) -> tuple[str, ...]``: the tags for this build, first the primary one;
- ``find_pushed(config, context, credentials) -> Image | None``: the registry already holds this
  commit's tag (asked through the registry API): return it with its digest, so build and push skip;
- ``build(client, config, context, *, progress) -> Image``;
- ``smoke(client, config, image, *, progress) -> None``: raises ``SmokeFailed`` (a PinotageError);
- ``push(client, config, image, credentials, *, progress) -> Image`` with the digest.

``credentials`` is ``registry.Credentials | None``, read only by the phases that push.

Reading the engine's JSON streams is kept apart from asking for them (``read_build_stream``,
``read_push_stream``, ``classify_push_error`` are pure), so recorded streams test them.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import re
import secrets
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from pipeline import probe, sandbox
# the push, with the other image phases (the runner and the tests ask this module for all of them)
from pipeline.push import (FATAL, REFUSED, RETRY, PushErrorKind, PushRejected, PushResult, RetryPolicy,  # noqa: F401
                           classify_push_error, push, read_push_stream)
from pipeline.errors import AuthError, BadInput, BuildFailed, SmokeFailed
from pipeline.shell import Progress
from pipeline.state import Image

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.context import BuildContext
    from pipeline.registry import Credentials


BUILD_TAIL_LINES = 15
STOP_NOTICE_S = 1.0  # how long a dropped connection waits to see whether the container exited
SMOKE_LABEL = "pinotage.smoke"
HEALTH_DEFAULT_PATH = "/healthz"  # the Dockerfile serves it whatever image.health_path is
_TAG_BAD_CHARS_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


def _quiet(line: str) -> None:
    pass


# --- tags ------------------------------------------------------------------

def tags_for(context: BuildContext, config: Config) -> tuple[str, ...]:
    """Return the tags for this build in the configured order; the first is the primary one."""
    suffix = "-dirty" if context.dirty else ""
    tags: list[str] = []
    for kind in config.image.tags:
        tag = {"commit": context.commit + suffix,
               "short-commit": context.short_commit + suffix,
               "branch": branch_tag(context.branch)}[kind]
        if tag and tag not in tags:
            tags.append(tag)
    if config.preview.enabled and context.same_repo_pr:
        tags.append(preview_tag(context))  # the preview tag: moves with each new commit of the PR
    if not tags:
        raise BadInput(f"image.tags: none of {', '.join(config.image.tags)} gives a tag for this build"
                       " (no branch checked out?)", hint="add 'commit' to image.tags")
    return tuple(tags)


def preview_tag(context: Any) -> str:
    """Return the tag a same-repository pull request's preview image is pushed under: ``pr-42``."""
    return f"pr-{context.change_id}"


def branch_tag(branch: str) -> str:
    """Make a branch name into a valid image tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}."""
    return _TAG_BAD_CHARS_RE.sub("-", branch).lstrip(".-")[:128]


def commit_tag(context: BuildContext, config: Config) -> str:
    """Return the tag that names this exact commit, or "" when no commit tag is configured or the tree is dirty."""
    if context.dirty:
        return ""  # a dirty tree's tag does not name fixed content: never trust it for a skip
    for kind, tag in (("commit", context.commit), ("short-commit", context.short_commit)):
        if kind in config.image.tags:
            return tag
    return ""


# --- skip ------------------------------------------------------------------

def find_pushed(config: Config, context: BuildContext, credentials: Credentials | None, *, progress: Progress = _quiet) -> Image | None:
    """Return the image the registry already holds for this commit (with its digest), else None."""
    from pipeline.registry import RegistryClient

    tag = commit_tag(context, config)
    if not tag:
        progress("no commit tag to look for (dirty tree or no commit tag configured): building")
        return None
    try:
        digest = RegistryClient(config.registry.url, credentials).manifest_digest(config.image.repository, tag)
    except AuthError:
        if credentials is None:
            progress(f"registry {config.registry.url} needs credentials to look for {tag}: building")
            return None
        raise
    if not digest:
        return None
    tags = tags_for(context, config)
    return Image(name=config.image_name(), tag=tag, tags=tuple(dict.fromkeys((tag,) + tags)),
                 digest=digest, commit=context.commit, built=False)


# --- build -----------------------------------------------------------------

def build_args(config: Config, context: BuildContext, *, created: str = "", sbom_digest: str = "") -> dict[str, str]:
    """Return the Dockerfile's build arguments: base images, labels, health path. Never a secret."""
    args = {
        "REVISION": context.commit + ("-dirty" if context.dirty else ""),
        "SOURCE": context.source_url,
        "CREATED": created or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "HEALTH_PATH": config.image.health_path,
    }
    if config.image.build_base:
        args["BUILD_BASE"] = config.image.build_base
    if config.image.final_base:
        args["FINAL_BASE"] = config.image.final_base
    if sbom_digest:
        args["SBOM_DIGEST"] = sbom_digest
    return args


def build(client: Any, config: Config, context: BuildContext, *, progress: Progress = _quiet,
          created: str = "", sbom: Any = None) -> Image:
    """Build the image through the engine, streaming its lines; tag it with every tag.

    ``sbom`` (a ``pipeline.sbom.Sbom``) is the app's SBOM: its digest becomes the image's label.
    """
    import docker.errors

    tags = tags_for(context, config)
    name = config.image_name()
    folder = config.path(config.image.context)
    if not (folder / config.image.dockerfile).is_file():
        raise BadInput(f"image.context: {folder / config.image.dockerfile}: no such file",
                       hint="image.context is relative to the folder of pinotage.yaml")
    try:
        events = client.api.build(path=str(folder), dockerfile=config.image.dockerfile, tag=f"{name}:{tags[0]}",
                                  buildargs=build_args(config, context, created=created,
                                                       sbom_digest=sbom.digest if sbom else ""),
                                  rm=True, forcerm=True, pull=False, decode=True)
        image_id = read_build_stream(events, progress=progress, deadline_s=config.deadlines.build_s)
        for tag in tags[1:]:
            client.api.tag(image_id, name, tag)
    except docker.errors.APIError as e:
        raise BuildFailed(f"the engine refused the build: {e.explanation or e}") from e
    return Image(name=name, tag=tags[0], tags=tags, commit=context.commit, built=True,
                 sbom=sbom.digest if sbom else "", packages=sbom.packages if sbom else ())


def read_build_stream(events: Iterable[Mapping[str, Any]], *, progress: Progress = _quiet,
                      deadline_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> str:
    """Read the engine's build stream: show its lines, return the image id, or raise BuildFailed."""
    start = clock()
    step = ""
    tail: collections.deque[str] = collections.deque(maxlen=BUILD_TAIL_LINES)
    image_id = ""
    for event in events:
        for line in str(event.get("stream", "")).splitlines():
            if not line.strip():
                continue
            match = _STEP_RE.match(line)
            if match:
                step = f"step {match[1]}/{match[2]} ({match[3].strip()})"
                tail.clear()
            elif not line.startswith((" ---> ", "Removing intermediate container")):
                tail.append(line)  # the step's own output, without the engine's bookkeeping
            progress(line)
        if event.get("status"):  # pulling a base image
            progress(" ".join(str(event[key]) for key in ("id", "status") if event.get(key)))
        if "aux" in event and isinstance(event["aux"], dict) and event["aux"].get("ID"):
            image_id = event["aux"]["ID"]
        if "error" in event:
            message = (event.get("errorDetail") or {}).get("message") or event["error"]
            where = f" at {step}" if step else ""
            raise BuildFailed(f"the build failed{where}: {message.strip()}", step=step, output_tail=tuple(tail),
                              hint="the lines above are the end of that step's output")
        if deadline_s is not None and clock() - start > deadline_s:
            raise BuildFailed(f"the build ran longer than {deadline_s:g} s (at {step or 'its start'})",
                              step=step, output_tail=tuple(tail), hint="raise deadlines.build_s if it is just slow")
    if not image_id:
        raise BuildFailed(f"the build stream ended without an image (last at {step or 'its start'})",
                          step=step, output_tail=tuple(tail))
    return image_id


# --- smoke test ------------------------------------------------------------

def smoke(client: Any, config: Config, image: Image, *, progress: Progress = _quiet) -> None:
    """Run the image, wait (bounded) for its health path, check its first slide; always remove it."""
    import docker.errors

    port = config.image.port
    name = f"pinotage-smoke-{secrets.token_hex(4)}"
    container = None
    labels = {SMOKE_LABEL: image.commit or "1"}
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(sandbox.network(client, name, labels))
            stack.callback(_remove, container_of=lambda: container)
            container = client.containers.run(
                image.ref, detach=True, name=name, environment={"PORT": str(port)}, network=name, labels=labels,
                **sandbox.RUN_LIMITS)
        except docker.errors.ImageNotFound as e:
            raise SmokeFailed(f"no image {image.ref} on this engine to smoke-test",
                              hint="run 'pinotage build' first") from e
        except docker.errors.APIError as e:
            raise SmokeFailed(f"the engine could not start {image.ref}: {e.explanation or e}") from e
        container.reload()
        address = sandbox.address(container, name)
        if not address:
            _raise_stopped(container, "it had an address")
        progress(f"started {name} from {image.ref}")
        check(container, f"http://{address}:{port}", config, image, progress=progress)
        # Passed: the container and its network go while the next phase runs. The thread is not a
        # daemon, so the process does not exit before they are gone; a failure removes them first.
        threading.Thread(target=_clean_up, args=(stack.pop_all(), name), name="pinotage-smoke-cleanup").start()


def check(container: Any, base_url: str, config: Config, image: Image, *, progress: Progress = _quiet) -> None:
    """Smoke-test a running container of the image at base_url: its health path, then the deck's first slide.

    ``smoke`` runs it in the sandbox; a run that deploys to the local target checks the release's
    own container instead (``runner.smoke_stage``), the one the deploy then routes to.
    """
    deadline_s = config.deadlines.smoke_s
    progress(f"waiting up to {deadline_s} s for {config.image.health_path} at {base_url}")
    _wait_healthy(container, base_url + config.image.health_path, deadline_s)
    progress(f"{config.image.health_path} answers 200")
    try:
        status, body = probe.get(base_url + "/")
    except OSError as e:
        if _stopped_within(container, STOP_NOTICE_S):
            _raise_stopped(container, "/ answered")
        raise SmokeFailed(f"{image.ref}: / did not answer ({type(e).__name__}: {e})",
                          log_tail=probe.log_tail(container)) from e
    if status != 200:
        raise SmokeFailed(f"{image.ref}: / answered HTTP {status}, not the deck",
                          log_tail=probe.log_tail(container))
    first = first_slide(body)
    if config.image.first_slide_text not in first:
        shown = " ".join(first.split())[:80]
        raise SmokeFailed(f"{image.ref}: the first slide does not contain {config.image.first_slide_text!r}"
                          f" (it reads {shown!r})", hint="check image.first_slide_text and slides/")
    progress(f"the first slide shows {config.image.first_slide_text!r}")


def _clean_up(stack: contextlib.ExitStack, name: str) -> None:
    try:
        stack.close()
    except Exception as e:  # the engine refused: say so once, the verdict stands
        print(f"pinotage: warning: could not remove the smoke container {name} or its network: {e}",
              file=sys.stderr)


def _remove(*, container_of: Callable[[], Any]) -> None:
    """Remove the smoke container, whatever ended the smoke test (a failure, Ctrl-C, SIGTERM)."""
    import docker.errors

    container = container_of()
    if container is not None:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)


def first_slide(html: str) -> str:
    """Return the text of a reveal.js deck's first slide (Markdown decks are split as reveal.js does)."""
    match = re.search(r"<section\b([^>]*)>(.*?)</section>", html, re.S | re.I)
    if not match:
        return ""
    attributes, inner = match[1], match[2]
    if "data-markdown" not in attributes:
        return re.sub(r"<[^>]+>", " ", inner)
    template = re.search(r"<textarea[^>]*>(.*?)</textarea>", inner, re.S | re.I)
    markdown = template[1] if template else re.sub(r"<[^>]+>", " ", inner)
    separator = re.search(r'data-separator="([^"]*)"', attributes)
    pattern = separator[1] if separator else r"\r?\n---\r?\n"
    return re.split(pattern, markdown.strip("\n"), maxsplit=1)[0]


def _wait_healthy(container: Any, url: str, deadline_s: float) -> None:
    path = "/" + url.split("/", 3)[-1]
    seen = probe.wait_healthy(container, url, deadline_s)
    if seen.healthy:
        return
    if seen.exit_code is not None:
        _raise_stopped(container, f"{path!r} answered")
    if seen.unhealthy:
        raise SmokeFailed(f"the container is unhealthy by its HEALTHCHECK before {path!r} answered",
                          log_tail=probe.log_tail(container))
    raise SmokeFailed(f"{path} did not answer 200 within {deadline_s:g} s (last: {seen.last})",
                      log_tail=probe.log_tail(container), hint="the container's last log lines are above")


def _stopped_within(container: Any, wait_s: float) -> bool:
    # The engine notes an exit a moment after the connection drops: look again for a little while.
    deadline = time.monotonic() + wait_s
    while True:
        container.reload()
        if probe.exit_code(container) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(probe.POLL_S)


def _raise_stopped(container: Any, before: str) -> None:
    container.reload()
    code = (container.attrs.get("State") or {}).get("ExitCode")
    raise SmokeFailed(f"the container exited with code {code} before {before}", log_tail=probe.log_tail(container),
                      hint="the container's last log lines are above")
