"""Shared measuring tools for the benchmark modules: timed commands, alternation, rows.

Wall time comes from ``timeit.default_timer`` around the child process; peak RSS and
CPU time come from ``/usr/bin/time -v`` wrapped around the same child. Peer and
Pinotage are measured alternately (P, peer, P, peer, ...) after a warm-up, so drift
of the machine (other work, page cache, thermal) falls on both alike; rows quote
medians.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Callable, Mapping, Sequence, TypeVar

ROOT = Path(__file__).resolve().parent.parent
GNU_TIME = "/usr/bin/time"
ROW_KEYS = ("row", "pinotage", "peer", "unit", "goal", "met", "note")

T = TypeVar("T")


class NotMeasurable(Exception):
    """Raise from a benchmark when a row cannot be measured here; the reason becomes its note."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One run of one command: wall seconds, peak RSS of the largest process, CPU seconds."""

    wall_s: float
    max_rss_mb: float
    cpu_s: float  # user + system, of the command and the children it waited for
    returncode: int
    stderr_tail: str
    stdout: str = ""


def python() -> str:
    """Return the interpreter the benchmarks measure with (the one running them)."""
    return sys.executable


def pinotage_argv() -> list[str]:
    """Return the argv that starts pinotage the way a user does: the console script beside python.

    A pyenv shim or other wrapper on PATH would add its own start-up, so the script next to the
    interpreter is preferred; ``python -m pipeline`` is the fall-back.
    """
    script = Path(sys.executable).parent / "pinotage"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "pipeline"]


def run_timed(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
              timeout_s: float = 600, check: bool = True) -> Sample:
    """Run argv under /usr/bin/time -v; return its wall time, peak RSS and CPU time."""
    if not os.access(GNU_TIME, os.X_OK):
        raise NotMeasurable(f"{GNU_TIME} is missing (Debian package 'time')")
    with tempfile.NamedTemporaryFile("r", prefix="pinotage-bench-time-", suffix=".txt") as report:
        started = timeit.default_timer()
        done = subprocess.run([GNU_TIME, "-v", "-o", report.name, *argv], env=dict(env) if env is not None else None,
                              cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout_s)
        wall_s = timeit.default_timer() - started
        stats = parse_gnu_time(Path(report.name).read_text())
    tail = done.stderr.decode(errors="replace")[-2000:]
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} exited {done.returncode}: {tail.strip()[-600:]}")
    return Sample(wall_s=wall_s, max_rss_mb=stats["max_rss_kb"] / 1024,
                  cpu_s=stats["user_s"] + stats["system_s"], returncode=done.returncode, stderr_tail=tail,
                  stdout=done.stdout.decode(errors="replace"))


_GNU_TIME_FIELDS = {
    "Maximum resident set size (kbytes)": "max_rss_kb",
    "User time (seconds)": "user_s",
    "System time (seconds)": "system_s",
}


def parse_gnu_time(text: str) -> dict[str, float]:
    """Read the fields the benchmarks use from a /usr/bin/time -v report."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        label, _, value = line.strip().rpartition(": ")
        if label in _GNU_TIME_FIELDS and re.fullmatch(r"[0-9.]+", value):
            found[_GNU_TIME_FIELDS[label]] = float(value)
    missing = set(_GNU_TIME_FIELDS.values()) - set(found)
    if missing:
        raise RuntimeError(f"/usr/bin/time -v report lacks {sorted(missing)}: {text[-300:]!r}")
    return found


def alternate(pinotage: Callable[[], T], peer: Callable[[], T], *, runs: int, warmup: int) -> tuple[list[T], list[T]]:
    """Run pinotage and peer by turns, warm-up rounds first (discarded); return both lists of samples."""
    for _ in range(warmup):
        pinotage()
        peer()
    ours: list[T] = []
    theirs: list[T] = []
    for _ in range(runs):
        ours.append(pinotage())
        theirs.append(peer())
    return ours, theirs


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], unit: str) -> str:
    """Describe a list of samples as 'n=…, min…max' for a row's note."""
    if len(values) < 2:
        return f"n={len(values)}"
    digits = 3 if unit == "s" else 1
    return f"n={len(values)}, {min(values):.{digits}f}…{max(values):.{digits}f} {unit}"


def row(name: str, pinotage: float | None, peer: float | None, unit: str, goal: str,
        met: bool | None, note: str = "") -> dict:
    """Return one row as the harness expects it."""
    return {"row": name, "pinotage": pinotage, "peer": peer, "unit": unit, "goal": goal, "met": met, "note": note}


def not_measured(name: str, unit: str, goal: str, why: str) -> dict:
    """Return a row that says honestly why it has no figure."""
    return row(name, None, None, unit, goal, None, f"not measured: {why}")


def have_tool(name: str) -> bool:
    return shutil.which(name) is not None
