"""The benchmarks cannot rot: `benchmarks/run --quick` runs every topic once, at a small size.

Figures are not checked here (speed goals belong to the benchmark table, never to timed
tests); what is checked is that every topic runs, every row follows the convention, and the
document is written where asked and nowhere else. A row that cannot be measured because a
service is missing follows need(): a failure in CI, a skip elsewhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, need

pytestmark = pytest.mark.integration

QUICK_TIMEOUT_S = 540


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Run benchmarks/run --quick once for the module; return its result, rows and document."""
    tmp = tmp_path_factory.mktemp("bench")
    docs_before = (ROOT / "docs/benchmarks.md").read_bytes() if (ROOT / "docs/benchmarks.md").exists() else None
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/run"), "--quick", "--output", str(tmp / "bench.md"),
                           "--json", str(tmp / "rows.json")], cwd=ROOT, capture_output=True, text=True,
                          timeout=QUICK_TIMEOUT_S)
    rows = json.loads((tmp / "rows.json").read_text()) if (tmp / "rows.json").exists() else []
    document = (tmp / "bench.md").read_text() if (tmp / "bench.md").exists() else ""
    docs_after = (ROOT / "docs/benchmarks.md").read_bytes() if (ROOT / "docs/benchmarks.md").exists() else None
    return {"done": done, "rows": rows, "document": document, "docs_unchanged": docs_before == docs_after}


def test_quick_mode_exits_zero_and_prints_the_table(quick_run):
    done = quick_run["done"]
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("| what is measured | Pinotage | peer | ratio | goal | verdict | note |")


def test_every_topic_reports_rows(quick_run):
    topics = {p.stem[len("bench_"):] for p in (ROOT / "benchmarks").glob("bench_*.py")}
    assert {"cli", "run"} <= topics
    assert topics == {r["topic"] for r in quick_run["rows"]}


def test_no_benchmark_is_broken(quick_run):
    broken = [f"{r['row']}: {r['note']}" for r in quick_run["rows"] if r["note"].startswith("error:")]
    assert not broken, broken


def test_every_row_is_measured_or_says_why(quick_run):
    for r in quick_run["rows"]:
        assert set(r) >= {"row", "pinotage", "peer", "unit", "goal", "met", "note"}, r
        if r["pinotage"] is None:
            assert r["note"].startswith("not measured: "), r
        else:
            assert isinstance(r["pinotage"], (int, float)) and r["pinotage"] >= 0, r
            assert r["unit"] and r["goal"], r
    missing = [f"{r['row']} ({r['note']})" for r in quick_run["rows"] if r["pinotage"] is None]
    if missing:
        need("every benchmark's services", "; ".join(missing))


def test_document_has_machine_versions_and_every_row(quick_run):
    document = quick_run["document"]
    for heading in ("## Machine", "## Versions", "## Results", "- cores: ", "- docker engine: ", "- pinotage: "):
        assert heading in document
    table_rows = [line for line in document.splitlines() if line.startswith("| ") and "what is measured" not in line]
    assert len(table_rows) == len(quick_run["rows"])


def test_quick_mode_leaves_the_published_table_alone(quick_run):
    assert quick_run["docs_unchanged"]


def test_benchmarks_leave_no_container_behind(quick_run, docker_client):
    left = [c.name for c in docker_client.containers.list(all=True)
            if c.labels.get("org.pinotage.app", "").startswith("pinobench")]
    assert not left
