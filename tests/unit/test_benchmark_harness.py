"""The benchmark harness: the row convention, the table's cells, and a broken topic becoming a row."""

from __future__ import annotations

import importlib.machinery
import importlib.util

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
    ({"peer": 0}, None),
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
