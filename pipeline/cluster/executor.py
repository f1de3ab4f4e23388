"""Run, or show, the commands of the cluster steps.

Steps call ``check`` for a read-only probe of the state, ``secret`` for a command whose
answer is a credential, and ``act`` for a command that changes something. In a dry run
nothing runs at all, not even the probes: each is shown and answered with what a fresh
machine would answer (``assume``), so ``--dry-run`` lists the whole of a fresh rebuild.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Callable

from pipeline.shell import DEFAULT_TIMEOUT_S, Completed, Shell

PROBE_TIMEOUT_S = 120


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclasses.dataclass
class Executor:
    shell: Shell  # streams each command's output as progress
    quiet: Shell  # shows nothing: for probes, and for commands whose output is a credential
    dry_run: bool = False
    say: Callable[[str], None] = _to_stderr
    step: str = ""

    def begin(self, step: str) -> None:
        """Name the step that the next lines belong to."""
        self.step = step
        self.say(f"==> cluster {step}")

    def note(self, text: str) -> None:
        """Say what a step found or decided (already initialised, nothing to do, …)."""
        self.say(f"    {text}")

    def check(self, argv: list[str], *, assume: str) -> Completed:
        """Run a read-only probe and return its answer; in a dry run, show it and answer ``assume``."""
        self.say(f"    check  {shlex.join(argv)}")
        if self.dry_run:
            return Completed(tuple(argv), 0, assume)
        return self.quiet.run(argv, timeout_s=PROBE_TIMEOUT_S)

    def secret(self, argv: list[str], *, assume: str) -> Completed:
        """Run a command whose output is a credential: its output is never shown nor logged."""
        self.say(f"    run    {shlex.join(argv)}  (output kept in memory)")
        if self.dry_run:
            return Completed(tuple(argv), 0, assume)
        return self.quiet.run(argv, timeout_s=PROBE_TIMEOUT_S)

    def act(self, argv: list[str], *, timeout_s: float = DEFAULT_TIMEOUT_S, input_text: str | None = None,
            input_label: str = "", check: bool = True, quiet: bool = False) -> Completed:
        """Run a command that changes something; in a dry run, only show it.

        ``input_label`` is what the listing shows for the standard input (never the input
        itself, which may hold a token). ``quiet`` keeps the output from the progress stream.
        """
        shown = shlex.join(argv) + (f"  < {input_label}" if input_label else "")
        self.say(f"    run    {shown}")
        if self.dry_run:
            return Completed(tuple(argv), 0, "")
        runner = self.quiet if quiet else self.shell
        return runner.run(argv, timeout_s=timeout_s, check=check, input_text=input_text)

    def remove(self, path: str) -> None:
        """Remove a local file a step makes again; in a dry run, only say so."""
        self.say(f"    remove {path}")
        if not self.dry_run:
            Path(path).unlink(missing_ok=True)

    def write(self, path: str, text: str) -> None:
        """Write a local file the next command reads; in a dry run, only say so."""
        self.say(f"    write  {path}")
        if not self.dry_run:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
