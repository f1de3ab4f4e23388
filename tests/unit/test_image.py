"""The image phases' pure parts: tag policy, build args, reading the engine's streams, retry policy."""

from __future__ import annotations

import dataclasses
import random
import threading
import types

import pytest

from pipeline import config as config_module
from pipeline import image
from pipeline.context import BuildContext
from pipeline.errors import AuthError, BadInput, BuildFailed, PushFailed

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def a_config(*overrides: str) -> config_module.Config:
    return config_module.load(environ={}, overrides=list(overrides), cwd="/nonexistent")


def a_context(**changes) -> BuildContext:
    return dataclasses.replace(BuildContext(commit=COMMIT, branch="master", event="default-branch"), **changes)


@pytest.mark.parametrize("kinds, context, expected", [
    ("commit,short-commit,branch", a_context(), (COMMIT, COMMIT[:12], "master")),
    ("commit,short-commit,branch", a_context(dirty=True), (COMMIT + "-dirty", COMMIT[:12] + "-dirty", "master")),
    ("branch,commit", a_context(branch="feature/Add login"), ("feature-Add-login", COMMIT)),
    ("short-commit,branch", a_context(branch=""), (COMMIT[:12],)),
    ("commit,branch", a_context(branch="master"), (COMMIT, "master")),
], ids=["default-order", "dirty-suffix", "branch-first-made-valid", "detached-no-branch-tag", "no-short"])
def test_tags_for(kinds, context, expected):
    assert image.tags_for(context, a_config(f"image.tags={kinds}")) == expected


def test_tags_for_refuses_a_policy_that_gives_no_tag():
    with pytest.raises(BadInput, match="image.tags: none of branch"):
        image.tags_for(a_context(branch=""), a_config("image.tags=branch"))


@pytest.mark.parametrize("branch, tag", [
    ("master", "master"),
    ("feature/login", "feature-login"),
    ("-leading.dash", "leading.dash"),
    ("..dots", "dots"),
    ("ünïcode branch", "n-code-branch"),
    ("x" * 200, "x" * 128),
    ("release_1.2", "release_1.2"),
    ("///", ""),
], ids=["plain", "slash", "leading-dash", "leading-dots", "non-ascii", "too-long", "underscore-dot", "nothing-left"])
def test_branch_tag(branch, tag):
    assert image.branch_tag(branch) == tag
    if tag:
        assert image._TAG_BAD_CHARS_RE.search(tag) is None and tag[0] not in ".-"


@pytest.mark.parametrize("kinds, context, expected", [
    ("commit,short-commit,branch", a_context(), COMMIT),
    ("branch,short-commit", a_context(), COMMIT[:12]),
    ("commit,branch", a_context(dirty=True), ""),
    ("branch", a_context(), ""),
], ids=["full-commit", "short-commit", "dirty-never-skips", "no-commit-tag"])
def test_commit_tag(kinds, context, expected):
    assert image.commit_tag(context, a_config(f"image.tags={kinds}")) == expected


def test_build_args_carry_labels_and_bases_and_no_secret():
    config = a_config("image.build_base=local/build:1", "image.final_base=local/run:1", "image.health_path=/up")
    args = image.build_args(config, a_context(source_url="https://git.example/p.git"), created="2026-01-02T03:04:05Z")
    assert args == {"REVISION": COMMIT, "SOURCE": "https://git.example/p.git", "CREATED": "2026-01-02T03:04:05Z",
                    "HEALTH_PATH": "/up", "BUILD_BASE": "local/build:1", "FINAL_BASE": "local/run:1"}
    assert "BUILD_BASE" not in image.build_args(a_config(), a_context())  # the Dockerfile's default applies


# Recorded from docker.io 20.10's /build stream (classic builder).
BUILD_OK = [
    {"stream": "Step 1/3 : FROM pinotage-base/node-runtime:4505e06e93f1"}, {"stream": "\n"},
    {"stream": " ---> 053fbfe37235\n"},
    {"stream": "Step 2/3 : RUN echo hello"}, {"stream": "\n"}, {"stream": " ---> Running in 7c7329799131\n"},
    {"stream": "hello\n"}, {"stream": "Removing intermediate container 7c7329799131\n"},
    {"stream": " ---> b06e03b1fda7\n"},
    {"aux": {"ID": "sha256:b06e03b1fda7"}}, {"stream": "Successfully built b06e03b1fda7\n"},
]
BUILD_FAILS = BUILD_OK[:9] + [
    {"stream": "Step 3/3 : RUN echo bye && exit 3"}, {"stream": "\n"}, {"stream": " ---> Running in 255e99bf2685\n"},
    {"stream": "bye\n"}, {"stream": "Removing intermediate container 255e99bf2685\n"},
    {"errorDetail": {"code": 3, "message": "The command '/bin/sh -c echo bye && exit 3' returned a non-zero code: 3"},
     "error": "The command '/bin/sh -c echo bye && exit 3' returned a non-zero code: 3"},
]


def test_read_build_stream_returns_the_image_and_shows_every_line():
    shown = []
    assert image.read_build_stream(BUILD_OK, progress=shown.append) == "sha256:b06e03b1fda7"
    assert "Step 2/3 : RUN echo hello" in shown and "hello" in shown


def test_read_build_stream_names_the_failing_step_and_its_last_lines():
    with pytest.raises(BuildFailed) as failed:
        image.read_build_stream(BUILD_FAILS)
    assert failed.value.message == ("the build failed at step 3/3 (RUN echo bye && exit 3): "
                                    "The command '/bin/sh -c echo bye && exit 3' returned a non-zero code: 3")
    assert failed.value.output_tail == ("bye",)
    assert failed.value.lines() == [failed.value.message, "  | bye"]


def test_read_build_stream_without_an_image_fails():
    with pytest.raises(BuildFailed, match="ended without an image"):
        image.read_build_stream(BUILD_OK[:5])


def test_read_build_stream_stops_at_its_deadline():
    ticks = iter([0.0, 1.0, 2.0, 50.0] + [60.0] * 20)
    with pytest.raises(BuildFailed, match="longer than 10 s"):
        image.read_build_stream(BUILD_OK, deadline_s=10, clock=lambda: next(ticks))


DIGEST = "sha256:" + "ab" * 32
# Recorded from docker.io 20.10's /images/{name}/push stream.
PUSH_OK = [
    {"status": "The push refers to repository [127.0.0.1:5000/p]"},
    {"status": "Preparing", "progressDetail": {}, "id": "014bc8670f91"},
    {"status": "Pushing", "progressDetail": {"current": 512, "total": 3110}, "id": "014bc8670f91"},
    {"status": "Pushing", "progressDetail": {"current": 3110, "total": 3110}, "id": "014bc8670f91"},
    {"status": "Pushed", "progressDetail": {}, "id": "014bc8670f91"},
    {"status": f"master: digest: {DIGEST} size: 943"},
    {"progressDetail": {}, "aux": {"Tag": "master", "Digest": DIGEST, "Size": 943}},
]
PUSH_REFUSED = PUSH_OK[:2] + [
    {"errorDetail": {"message": "unauthorized: authentication required"}, "error": "unauthorized: authentication required"},
]


def test_read_push_stream_returns_the_digest_and_one_line_per_layer_state():
    shown = []
    result = image.read_push_stream(PUSH_OK, progress=shown.append)
    assert result == image.PushResult(DIGEST, 943)
    assert shown.count("014bc8670f91: Pushing") == 1


def test_read_push_stream_raises_on_an_in_band_error():
    with pytest.raises(image.PushRejected) as rejected:
        image.read_push_stream(PUSH_REFUSED)
    assert rejected.value.kind == image.REFUSED


@pytest.mark.parametrize("message, kind", [
    ("unauthorized: authentication required", image.REFUSED),
    ("denied: requested access to the resource is denied", image.REFUSED),
    ("received unexpected HTTP status: 403 Forbidden", image.REFUSED),
    ("name unknown: repository name not known to registry", image.FATAL),
    ("An image does not exist locally with the tag: 127.0.0.1:5000/p", image.FATAL),
    ("received unexpected HTTP status: 500 Internal Server Error", image.RETRY),
    ("received unexpected HTTP status: 502 Bad Gateway", image.RETRY),
    ("toomanyrequests: too many requests (injected)", image.RETRY),
    ("error parsing HTTP 429 response body: unexpected end of JSON input", image.RETRY),
    ('Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused', image.RETRY),
    ("Patch http://127.0.0.1:5000/v2/p/blobs/uploads/x: EOF", image.RETRY),
    ("manifest invalid: manifest invalid", image.FATAL),
    ("dial tcp 127.0.0.1:500: i/o timeout", image.RETRY),
], ids=["401", "denied", "403", "name-unknown", "no-local-image", "500", "502", "429-errcode", "429-status",
        "refused", "eof", "manifest-invalid", "timeout-port-500-is-not-a-status"])
def test_classify_push_error(message, kind):
    assert image.classify_push_error(message) == kind


@pytest.mark.parametrize("failed, low, high", [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (9, 4.0, 8.0)],
                         ids=["first", "second", "third", "capped"])
def test_retry_delays_grow_with_jitter_and_stay_bounded(failed, low, high):
    policy = image.RetryPolicy(attempts=10, base_s=1.0, cap_s=8.0)
    delays = [policy.delay_s(failed, random.Random(seed)) for seed in range(50)]
    assert all(low <= d < high or d == high for d in delays)
    assert len(set(delays)) > 1  # jitter


class RecordedEngine:
    """The docker SDK's low-level push, answering recorded streams in order; refuses anything else."""

    def __init__(self, streams):
        self.streams = list(streams)
        self.calls = []

    def push(self, name, *, tag, stream, decode, auth_config):
        assert stream and decode, "the phase must read the stream"
        self.calls.append((name, tag, auth_config))
        return iter(self.streams.pop(0))

    def __getattr__(self, name):
        raise AssertionError(f"unexpected engine call: {name}")


class Client:
    def __init__(self, streams):
        self.api = RecordedEngine(streams)


FAULT_500 = [{"error": "received unexpected HTTP status: 500 Internal Server Error"}]
FAULT_429 = [{"error": "toomanyrequests: too many requests"}]


@pytest.mark.parametrize("streams, outcome, sleeps", [
    ([PUSH_OK], DIGEST, 0),
    ([FAULT_500, FAULT_429, PUSH_OK], DIGEST, 2),
    ([FAULT_500] * 3, PushFailed, 2),
    ([PUSH_REFUSED], AuthError, 0),
], ids=["ok", "500-429-ok", "stays-5xx", "refused-not-retried"])
def test_push_retries_what_a_retry_can_fix(streams, outcome, sleeps):
    client = Client(streams)
    slept = []
    pushed = image.Image(name="127.0.0.1:5000/p", tag="master", tags=("master",))
    run = lambda: image.push(client, a_config(), pushed, None, retry=image.RetryPolicy(3, 0.1, 1.0),
                             sleep=slept.append)
    if isinstance(outcome, str):
        assert run().digest == outcome
    else:
        with pytest.raises(outcome):
            run()
    assert len(slept) == sleeps
    assert len(client.api.calls) == sleeps + 1


@pytest.mark.parametrize("html, text", [
    ('<section data-markdown data-separator="\\r?\\n---\\r?\\n"><textarea data-template>\n# Pinotage\n\nPush\n'
     '\n---\n\n## Loop\n</textarea></section>', "# Pinotage\n\nPush\n"),
    ("<section><h1>Pinotage</h1></section><section>Two</section>", " Pinotage "),
    ("<html>no deck</html>", ""),
], ids=["markdown-deck", "html-deck", "no-section"])
def test_first_slide(html, text):
    assert image.first_slide(html) == text
