"""The one way Pinotage runs an external command.

Commands are argv lists (never a shell string), run with a timeout. Their output
(standard error merged in) is kept whole up to OUTPUT_LIMIT_LINES, and a failure
quotes its last lines.
Code that orchestrates commands takes a ``Shell`` so tests can pass a fake that
refuses any command it was not told about.
"""

from __future__ import annotations

import collections
import dataclasses
import subprocess
import sys
import threading
from typing import Callable, Protocol

TAIL_LINES = 40
OUTPUT_LIMIT_LINES = 200_000  # past this only the newest lines are kept: a runaway command cannot eat memory
DEFAULT_TIMEOUT_S = 600

Progress = Callable[[str], None]  # takes one line for people: a phase's progress, or a command's output


@dataclasses.dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Shell(Protocol):
    def run(self, argv: list[str], *, timeout_s: float = DEFAULT_TIMEOUT_S, check: bool = True,
            input_text: str | None = None) -> Completed: ...


class SubprocessShell:
    """Run commands for real, streaming each output line to ``progress``."""

    def __init__(self, *, cwd: str | None = None, env: dict[str, str] | None = None,
                 progress: Callable[[str], None] | None = None):
        self.cwd = cwd
        self.env = env
        self.progress = progress

    def run(self, argv: list[str], *, timeout_s: float = DEFAULT_TIMEOUT_S, check: bool = True,
            input_text: str | None = None) -> Completed:
        from pipeline.errors import CommandFailed

        lines: collections.deque[str] = collections.deque(maxlen=OUTPUT_LIMIT_LINES)
        try:
            proc = subprocess.Popen(
                argv, cwd=self.cwd, env=self.env, text=True, errors="replace",
                stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )
        except FileNotFoundError as e:
            raise CommandFailed(list(argv), 127, f"{argv[0]}: not found",
                                hint=f"install {argv[0]!r} or put it on PATH") from e
        timed_out = threading.Event()
        timer = threading.Timer(timeout_s, lambda: (timed_out.set(), proc.kill()))
        timer.start()
        try:
            if input_text is not None:
                proc.stdin.write(input_text)
                proc.stdin.close()
            for line in proc.stdout:
                line = line.rstrip("\n")
                lines.append(line)
                if self.progress is not None:
                    self.progress(line)
            proc.wait()
        finally:
            timer.cancel()
        tail = "\n".join(list(lines)[-TAIL_LINES:])
        if timed_out.is_set():
            raise CommandFailed(list(argv), None, tail, hint=f"it ran longer than {timeout_s:g} s")
        result = Completed(tuple(argv), proc.returncode, "\n".join(lines))
        if check and not result.ok:
            raise CommandFailed(list(argv), proc.returncode, tail)
        return result


def print_phase(line: str) -> None:
    """Print a phase's start, end or summary line."""
    print(f"==> {line}", file=sys.stderr, flush=True)


def print_progress(line: str) -> None:
    """Print one line of a command's output, indented under its phase."""
    print(f"    {line}", file=sys.stderr, flush=True)
