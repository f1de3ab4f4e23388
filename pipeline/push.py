"""The image phase's push: every tag to the registry, with bounded retries, read from the engine's stream.

``image.py`` re-exports ``push`` with the other image phases. docker-py reports a rejected push
inside its JSON stream without raising (docker-py issues #3161, #3277): ``read_push_stream``
reads it, and ``classify_push_error`` says whether an error is worth another attempt; both are
pure, so recorded streams test them.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import re
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from pipeline.errors import AuthError, PushFailed
from pipeline.shell import Progress
from pipeline.state import Image

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.registry import Credentials

_DIGEST_RE = re.compile(r"digest: (sha256:[0-9a-f]{64})")
_STATUS_RE = re.compile(r"(?:status|http)[: ]+([1-5][0-9]{2})\b", re.I)


def _quiet(line: str) -> None:
    pass


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter: waits min(cap, base·2^n) × [0.5, 1)."""

    attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 16.0

    def delay_s(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** (failed_attempts - 1))
        return ceiling * (0.5 + 0.5 * (rng or random).random())


class PushErrorKind(enum.Enum):
    """What a failed push attempt calls for."""

    RETRY = "retry"  # the registry or the connection failed for now: try again, backing off
    REFUSED = "refused"  # credentials or permissions: retrying cannot help
    FATAL = "fatal"  # anything else the registry or the engine refused: retrying cannot help either


RETRY, REFUSED, FATAL = PushErrorKind.RETRY, PushErrorKind.REFUSED, PushErrorKind.FATAL


@dataclasses.dataclass(frozen=True)
class PushResult:
    digest: str
    size: int = 0


class PushRejected(Exception):
    """A push attempt that failed: the registry's or the engine's message, classified."""

    def __init__(self, message: str, kind: PushErrorKind):
        super().__init__(message)
        self.message = message
        self.kind = kind


def classify_push_error(message: str) -> PushErrorKind:
    """Say whether a push error is worth retrying: RETRY, REFUSED (auth) or FATAL."""
    text = message.lower()
    if any(word in text for word in ("unauthorized", "authentication required", "denied", "forbidden",
                                     "no basic auth credentials", "incorrect username or password")):
        return REFUSED
    if any(word in text for word in ("name unknown", "name_unknown", "repository name not known",
                                     "does not exist locally", "invalid reference format")):
        return FATAL
    status = next((int(code) for code in _STATUS_RE.findall(text) if int(code) >= 400), None)
    if status in (401, 403):
        return REFUSED
    if status == 429 or (status is not None and status >= 500) or "toomanyrequests" in text:
        return RETRY
    if any(word in text for word in ("connection refused", "connection reset", "broken pipe", "eof",
                                     "i/o timeout", "tls handshake timeout", "timeout exceeded",
                                     "server misbehaving", "502 bad gateway", "503 service unavailable")):
        return RETRY
    return FATAL


def read_push_stream(events: Iterable[Mapping[str, Any]], *, progress: Progress = _quiet) -> PushResult:
    """Read the engine's push stream: show layer states, return the digest, or raise PushRejected.

    The engine reports a refused push inside this stream; the SDK call itself does not raise.
    """
    digest, size = "", 0
    shown: dict[str, str] = {}
    for event in events:
        if "error" in event:
            message = (event.get("errorDetail") or {}).get("message") or event["error"]
            raise PushRejected(str(message).strip(), classify_push_error(str(message)))
        aux = event.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest, size = aux["Digest"], int(aux.get("Size") or 0)
        status = str(event.get("status", ""))
        layer = str(event.get("id", ""))
        found = _DIGEST_RE.search(status)
        if found and not digest:
            digest = found[1]
        if status and layer and shown.get(layer) != status:
            shown[layer] = status  # one line per layer state, not per progress tick
            progress(f"{layer}: {status}")
        elif status and not layer:
            progress(status)
    if not digest:
        raise PushRejected("the push stream ended without a digest", FATAL)
    return PushResult(digest, size)


def _refusal(message: str, name: str) -> str:
    """Say a refused push plainly: a token without push scope is the usual cause on a token registry."""
    if "requested access to the resource is denied" in message or "insufficient_scope" in message:
        return f"the login's token has no push access to {name} ({message})"
    return message


def push(client: Any, config: Config, image: Image, credentials: Credentials | None, *, progress: Progress = _quiet,
         retry: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] = time.sleep) -> Image:
    """Push every tag of the image, retrying what a retry can fix; return the image with its digest.

    The engine pushes the first (primary) tag: the layers and the manifest whose digest pins the
    image. The other tags are that same manifest put under their names through the registry API
    (``RegistryClient.add_tags``), so every tag names the one digest: the engine, asked to push
    each tag, may write a layer's compressed blob anew and name another manifest (seen through a
    proxy in benchmarks/bench_image.py), and would check every layer again for each tag.
    """
    deadline = time.monotonic() + config.deadlines.push_s
    auth = credentials.auth_config() if credentials is not None else None
    first, *others = image.tags or (image.tag,)
    digest = _push_tag(client, image.name, first, auth, progress=progress, retry=retry, sleep=sleep,
                       deadline=deadline)
    if others:
        _add_tags(image.name, digest, others, credentials, progress=progress, retry=retry, sleep=sleep,
                  deadline=deadline)
    progress(f"pushed {image.name}@{digest}")
    return dataclasses.replace(image, digest=digest)


def _add_tags(name: str, digest: str, tags: list[str], credentials: Credentials | None, *, progress: Progress,
              retry: RetryPolicy, sleep: Callable[[float], None], deadline: float) -> None:
    """Put the pushed manifest under the other tags, retrying what a retry can fix."""
    from pipeline.errors import RegistryError
    from pipeline.registry import RegistryClient, split_name

    host, repository = split_name(name)
    registry = RegistryClient(host, credentials, actions="pull,push")
    for attempt in range(1, retry.attempts + 1):
        try:
            registry.add_tags(repository, digest, tags)
        except AuthError as e:
            raise AuthError(f"the registry refused the tags {', '.join(tags)} of {name}: {e.message}",
                            hint=e.hint) from None
        except RegistryError as e:
            message = e.message
            # A registry that does not answer (connection refused, reset) may answer the next time.
            kind = RETRY if "does not answer" in message else classify_push_error(message)
            delay = retry.delay_s(attempt)
            if kind != RETRY or attempt == retry.attempts or time.monotonic() + delay > deadline:
                raise PushFailed(f"tagging {name}@{digest} as {', '.join(tags)} failed: {message}",
                                 attempts=attempt) from None
            progress(f"attempt {attempt}/{retry.attempts} to tag failed ({message}); retrying in {delay:.1f} s")
            sleep(delay)
            continue
        progress(f"tagged {digest[:19]} as {', '.join(tags)} in the registry")
        return


def _push_tag(client: Any, name: str, tag: str, auth: dict[str, str] | None, *, progress: Progress,
              retry: RetryPolicy, sleep: Callable[[float], None], deadline: float) -> str:
    import docker.errors
    import requests

    for attempt in range(1, retry.attempts + 1):
        try:
            try:
                events = client.api.push(name, tag=tag, stream=True, decode=True, auth_config=auth)
                return read_push_stream(events, progress=progress).digest
            except docker.errors.APIError as e:
                message = str(e.explanation or e)
                raise PushRejected(message, classify_push_error(message)) from e
            except requests.ConnectionError as e:
                raise PushRejected(f"the engine's push stream broke: {type(e).__name__}", RETRY) from e
        except PushRejected as e:
            rejected = e
        if rejected.kind == REFUSED:
            raise AuthError(f"the registry refused the push of {name}:{tag}: {_refusal(rejected.message, name)}",
                            hint="check PINOTAGE_REGISTRY_USER / PINOTAGE_REGISTRY_PASSWORD (or the docker"
                                 " login) and the account's rights on the repository; on Docker Hub, an access"
                                 " token with Read & Write scope") from None
        if rejected.kind == FATAL:
            raise PushFailed(f"push of {name}:{tag} failed: {rejected.message}", attempts=attempt) from None
        delay = retry.delay_s(attempt)
        if attempt == retry.attempts or time.monotonic() + delay > deadline:
            raise PushFailed(f"push of {name}:{tag} failed after {attempt} attempts: {rejected.message}",
                             attempts=attempt, hint="the registry kept failing; try again later") from None
        progress(f"attempt {attempt}/{retry.attempts} failed ({rejected.message}); retrying in {delay:.1f} s")
        sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")
