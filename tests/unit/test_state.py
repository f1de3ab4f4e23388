"""The state file between Jenkins stages: one validated, frozen value in, the same value out."""

from __future__ import annotations

import json

import pytest

from pipeline.context import BuildContext
from pipeline.errors import BadInput
from pipeline.state import Deployment, Image, Release, StageMark, State, failure_text, read_state, write_state

COMMIT = "a" * 40
IMAGE = Image(name="127.0.0.1:5000/p", tag=COMMIT, tags=(COMMIT, "master"), digest="sha256:" + "1" * 64,
              commit=COMMIT)
RELEASE = Release(image=IMAGE, commit=COMMIT, build_url="https://ci/7/", ledger_id="r-1")


def test_every_value_comes_back_as_written(tmp_path):
    path = tmp_path / "s.json"
    assert read_state(path) == State()
    context = BuildContext(commit=COMMIT, branch="master", event="default-branch")
    write_state(path, replace=True, context=context)
    write_state(path, image=IMAGE)
    written = write_state(path, deployment=Deployment(target="kubernetes", revision="3", previous=None,
                                                      release=RELEASE))
    assert read_state(path) == written == State(context=context, image=IMAGE, deployment=written.deployment)
    assert write_state(path, replace=True, context=context) == State(context=context)


@pytest.mark.parametrize("data, message", [
    ({"version": 2}, "not a Pinotage state file of version 1"),
    ([], "not a Pinotage state file of version 1"),
    ({"version": 1, "imag": {}}, "not a Pinotage state file: unknown key 'imag'"),
    ({"version": 1, "stage": {"name": "Build", "result": "passed", "at": "x"}}, "stage: not a stage mark: unknown key 'at'"),
    ({"version": 1, "image": "r/x:t"}, "image: not an image: it is a string, expected a mapping"),
    ({"version": 1, "image": {"name": "r/x", "tag": "t", "extra": 1}}, "image: not an image: unknown key 'extra'"),
    ({"version": 1, "image": {"tag": "t"}}, "image: not an image: missing key 'name'"),
    ({"version": 1, "image": {"name": "r/x", "tag": "t", "tags": ["a", 1]}}, "image: not an image: tags is a list, expected a list of strings"),
    ({"version": 1, "image": {"name": "r/x", "tag": "t", "built": "yes"}}, "image: not an image: built is a string, expected true or false"),
    ({"version": 1, "deployment": {"target": "docker", "revision": "1", "release": {"commit": COMMIT}}},
     "deployment: not a deployment: missing key release.'image'"),
    ({"version": 1, "deployment": {"target": "docker", "revision": "1",
                                   "previous": {"image": {"name": "r/x"}, "commit": COMMIT}}},
     "deployment: not a deployment: missing key previous.image.'tag'"),
    ({"version": 1, "context": {"commit": "x"}}, "'context' is not a build context"),
], ids=["other-version", "not-an-object", "unknown-key", "unknown-stage-key", "image-not-an-object", "unknown-image-key",
        "missing-image-key", "a-tag-not-a-string", "built-not-a-bool", "nested-missing", "nested-twice",
        "bad-context"])
def test_a_bad_state_file_is_one_clear_error(tmp_path, data, message):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BadInput) as caught:
        read_state(path)
    assert message in caught.value.message


@pytest.mark.parametrize("stage, text", [
    (None, "failed before its first pinotage stage"),
    (StageMark("Build", "running", "https://ci/6/"), "failed before its first pinotage stage"),
    (StageMark("Build", "running", "https://ci/7/"), "failed in stage Build"),
    (StageMark("Smoke", "passed", "https://ci/7/"), "failed after stage Smoke"),
], ids=["no-stage", "an-earlier-build-stage", "running", "passed"])
def test_failure_text_names_the_last_stage_of_this_build(stage, text):
    assert failure_text(State(stage=stage), "https://ci/7/") == text
