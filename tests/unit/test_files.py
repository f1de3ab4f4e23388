"""Writing files whole and reading them as text: what a crash, a full disk or a bad file leaves."""

from __future__ import annotations

import os

import pytest

from pipeline import files, state
from pipeline.errors import BadInput


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "s.json"
    files.write_atomic(path, b"one")
    files.write_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    assert sorted(os.listdir(path.parent)) == ["s.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    files.write_atomic(path, b"old")

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        files.write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["s.json"]


def test_write_all_finishes_a_short_write(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))  # 3 bytes a call
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        files.write_all(fd, b"0123456789")
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"0123456789"


def test_the_state_file_is_written_whole_under_a_lock(tmp_path):
    path = tmp_path / "s.json"
    state.write_state(path, image=state.Image(name="r/p", tag="t"))
    state.write_state(path, image=state.Image(name="r/p", tag="t", digest="sha256:" + "0" * 64))
    assert state.read_state(path).image.digest == "sha256:" + "0" * 64
    assert sorted(os.listdir(tmp_path)) == ["s.json", "s.json.lock"]


@pytest.mark.parametrize("content, expected", [
    (b"a: \xc3\n", "f.yaml:1: the thing is not UTF-8 text (a bad byte at offset 3)"),
    (b"ok\nok\n\x00", "f.yaml:3: the thing is binary"),
    (b"x" * 11, "f.yaml: the thing is larger than 0 KiB"),
])
def test_read_text_names_the_file_and_line(tmp_path, content, expected):
    (tmp_path / "f.yaml").write_bytes(content)
    with pytest.raises(BadInput) as e:
        files.read_text(tmp_path / "f.yaml", what="thing", limit_bytes=10, name="f.yaml")
    assert e.value.message.startswith(expected)
