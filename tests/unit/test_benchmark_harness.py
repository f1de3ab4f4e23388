"""The benchmark harness: the row convention, the table's cells, and a broken topic becoming a row."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re

import pytest

from benchmarks import measure
from tests.conftest import ROOT


def _load_harness():
    loader = importlib.machinery.SourceFileLoader("benchmarks_run", str(ROOT / "benchmarks/run"))
    spec = importlib.util.spec_from_loader("benchmarks_run", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


harness = _load_harness()

GOOD = {"row": "CLI start", "pinotage": 0.05, "peer": 0.25, "unit": "s", "goal": "≤ 1/5", "met": True, "note": ""}


@pytest.mark.parametrize("change, problem", [
    ({"pinotage": None, "met": None, "note": "not measured: no engine"}, None),
    ({"peer": 0, "met": False, "note": "gap: no peer to compare with"}, None),
    ({"extra": "ignored"}, None),
    ({"note": ...}, "lacks note"),
    ({"pinotage": "0.05"}, "pinotage is '0.05', not a number"),
    ({"peer": True}, "peer is True, not a number"),
    ({"met": "yes"}, "met is 'yes'"),
], ids=["not-measured", "zero-peer", "extra-key-dropped", "missing-key", "text-figure", "bool-figure", "text-verdict"])
def test_check_row(change, problem):
    candidate = {k: v for k, v in {**GOOD, **change}.items() if v is not ...}
    if problem is None:
        assert set(harness.check_row(candidate)) == set(measure.ROW_KEYS)
    else:
        with pytest.raises(ValueError, match=problem):
            harness.check_row(candidate)


@pytest.mark.parametrize("pinotage, peer, shown", [
    (0.05, 0.25, "0.20"),
    (0, 1000, "0"),
    (0.001, 10, "1.0e-04"),
    (1.0, None, "—"),
    (None, 1.0, "—"),
    (1.0, 0, "—"),
], ids=["fifth", "zero-writes", "tiny", "no-peer", "not-measured", "zero-peer"])
def test_format_ratio(pinotage, peer, shown):
    assert harness.format_ratio(pinotage, peer) == shown


@pytest.mark.parametrize("value, unit, shown", [
    (0.0512, "s", "0.051 s"),
    (25.31, "s", "25.3 s"),
    (35.25, "MB", "35.2 MB"),
    (0, "writes", "0 writes"),
    (7.61, "%", "7.61 %"),
    (None, "s", "—"),
], ids=["seconds", "long-seconds", "megabytes", "count", "percent", "none"])
def test_format_value(value, unit, shown):
    assert harness.format_value(value, unit) == shown


def test_table_has_one_line_per_row_with_verdicts():
    rows = [GOOD, {**GOOD, "row": "peak RSS: pinotage run", "pinotage": 200.0, "peer": None, "unit": "MB",
                   "met": False, "note": "gap: 200 MB"},
            {**GOOD, "row": "no-op run", "pinotage": None, "peer": None, "met": None, "note": "not measured: no engine"}]
    lines = harness.render_tables(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[2].startswith("| CLI start | 0.050 s | 0.250 s | 0.20 | ≤ 1/5 | met |")
    assert "| 200.0 MB | — | — |" in lines[3] and "| **gap** | gap: 200 MB |" in lines[3]
    assert "| not measured | not measured: no engine |" in lines[4]


def test_a_topic_that_cannot_run_becomes_an_error_row():
    rows = harness.run_topic("no_such_topic", quick=True)
    assert [r["row"] for r in rows] == ["no_such_topic: benchmark failed"]
    assert rows[0]["note"].startswith("error: ModuleNotFoundError")


GNU_TIME_REPORT = """\
\tCommand being timed: "pinotage --help"
\tUser time (seconds): 0.07
\tSystem time (seconds): 0.01
\tElapsed (wall clock) time (h:mm:ss or m:ss): 0:00.09
\tMaximum resident set size (kbytes): 13696
\tExit status: 0
"""


def test_parse_gnu_time_reads_rss_and_cpu():
    assert measure.parse_gnu_time(GNU_TIME_REPORT) == {"max_rss_kb": 13696, "user_s": 0.07, "system_s": 0.01}


def test_parse_gnu_time_refuses_a_report_without_rss():
    with pytest.raises(RuntimeError, match="max_rss_kb"):
        measure.parse_gnu_time(GNU_TIME_REPORT.replace("Maximum resident", "Largest resident"))


def _row(goal: str, pinotage, peer, met, unit: str = "s", note: str = "") -> dict:
    return {"row": "r", "pinotage": pinotage, "peer": peer, "unit": unit, "goal": goal, "met": met, "note": note}


@pytest.mark.parametrize("row, problem", [
    (_row("≤ 1/5 of the peer", 0.1, 1.0, True), ""),
    (_row("≤ 1/5 of the peer", 0.3, 1.0, True), "marked met, but ratio"),
    (_row("≤ 1/5 of the peer", 0.3, 1.0, False, note="gap: 0.3"), ""),
    (_row("≤ 1/5 of the peer", 0.1, 1.0, False), "marked a gap, but every clause"),
    (_row("≤ 1/10 of the peer, and < 3 s", 0.5, 10.0, True), ""),
    (_row("≤ 1/10 of the peer, and < 3 s", 3.5, 40.0, True), "marked met, but value < 3"),
    (_row("≤ 1.25× the floor", 6.0, 5.0, True), ""),
    (_row("≤ 1.25× the floor", 6.5, 5.0, True), "marked met, but ratio ≤ 1.25"),
    (_row("≤ 5 % (the rest waits)", 4.6, None, True, unit="%"), ""),
    (_row("≤ 5 % (the rest waits)", 5.6, None, True, unit="%"), "marked met, but value ≤ 5"),
    (_row("0 dropped, of ≥ 1,000 at ≥ 100/s, in every run", 0.0, None, True, unit="requests"), ""),
    (_row("0 dropped, of ≥ 1,000 at ≥ 100/s, in every run", 2.0, None, True, unit="requests"), "value = 0"),
    (_row("0 dropped, of ≥ 1,000 at ≥ 100/s, in every run", 0.0, None, False, unit="requests",
          note="gap: a run of only 544 requests"), ""),
    (_row("only the changed layer", 2.3, 68.5, True, unit="MB"), "no clause a figure can be checked against"),
    (_row("≤ 1/5 of the peer", 0.1, None, True), "marked met, but ratio"),
    (_row("report (no goal set)", 64.8, 62.4, None, unit="MB"), ""),
    (_row("< 2 s", 0.4, None, None), "no verdict"),
    (_row("< 2 s", None, None, None, note="not measured: quick"), ""),
], ids=["fifth-met", "fifth-wrongly-met", "fifth-gap", "fifth-wrongly-gap", "two-clauses", "second-clause-fails",
        "times-floor", "times-floor-fails", "percent", "percent-fails", "zero", "zero-fails",
        "zero-gap-named", "unreadable-goal", "ratio-without-peer", "report", "goal-without-verdict", "not-measured"])
def test_a_verdict_that_contradicts_its_goal_is_caught(row, problem):
    assert problem in harness.goal_disagrees(row) if problem else harness.goal_disagrees(row) == ""


def _published_rows() -> list[dict]:
    """Read docs/benchmarks.md's table back into rows (figures without their units)."""
    rows = []
    for line in (ROOT / "docs/benchmarks.md").read_text().splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != 7 or cells[0] in ("what is measured", "---") or set(cells[1]) <= {"-", ":"}:
            continue
        name, ours, peer, _, goal, verdict, note = cells
        unit = ours.split(" ", 1)[1] if " " in ours else ""
        rows.append({"row": name, "pinotage": _figure(ours), "peer": _figure(peer), "unit": unit,
                     "goal": "" if goal == "—" else goal, "note": note,
                     "met": {"met": True, "**gap**": False}.get(verdict)})
    return rows


def _figure(cell: str) -> float | None:
    return None if cell == "—" else float(cell.split(" ", 1)[0])


def test_every_published_verdict_agrees_with_its_goal():
    rows = _published_rows()
    assert rows, "docs/benchmarks.md has no results table"
    disagreements = {r["row"]: harness.goal_disagrees(r) for r in rows if harness.goal_disagrees(r)}
    assert disagreements == {}
