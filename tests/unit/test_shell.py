"""The one command runner: whole output, quoted failures, timeouts, streamed progress."""

from __future__ import annotations

import pytest

from pipeline.errors import CommandFailed
from pipeline.shell import TAIL_LINES, SubprocessShell


def test_output_is_kept_whole_with_stderr_merged():
    done = SubprocessShell().run(["sh", "-c", "seq 1 500; echo oops >&2"])
    lines = done.output.splitlines()
    assert done.ok and len(lines) == 501
    assert lines[0] == "1" and lines[-1] == "oops"


def test_failure_quotes_the_last_line_and_keeps_a_bounded_tail():
    with pytest.raises(CommandFailed) as failed:
        SubprocessShell().run(["sh", "-c", "seq 1 100; echo 'disk full' >&2; exit 3"])
    assert failed.value.returncode == 3
    assert str(failed.value) == "command 'sh' exited 3: disk full"
    assert len(failed.value.output_tail.splitlines()) == TAIL_LINES


def test_unchecked_failure_returns_the_code():
    done = SubprocessShell().run(["sh", "-c", "exit 4"], check=False)
    assert (done.ok, done.returncode) == (False, 4)


def test_timeout_kills_the_command():
    with pytest.raises(CommandFailed) as failed:
        SubprocessShell().run(["sh", "-c", "echo started; exec sleep 30"], timeout_s=0.5)
    assert failed.value.returncode is None
    assert "timed out: started" in str(failed.value)
    assert "0.5 s" in failed.value.hint


def test_missing_command_names_it():
    with pytest.raises(CommandFailed) as failed:
        SubprocessShell().run(["no-such-command-pinotage"])
    assert failed.value.returncode == 127
    assert "no-such-command-pinotage" in failed.value.hint


def test_progress_sees_each_line_and_input_reaches_the_command():
    seen: list[str] = []
    done = SubprocessShell(progress=seen.append).run(["sh", "-c", "cat; echo end"], input_text="a\nb\n")
    assert seen == ["a", "b", "end"]
    assert done.output == "a\nb\nend"
