"""SIGTERM (a Jenkins abort) unwinds like Ctrl-C: every clean-up on the way runs before pinotage exits."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORK = """
import sys, time, pathlib
from pipeline import boundary

def work():
    try:
        print("ready", flush=True)
        time.sleep(30)
    finally:
        pathlib.Path(sys.argv[1]).write_text("cleaned up")  # as the smoke test removes its container
    return 0

sys.exit(boundary.run(work))
"""


def test_sigterm_runs_the_clean_up_and_exits_143(tmp_path):
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", WORK, str(marker)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 143
    assert marker.read_text() == "cleaned up"
    assert err.strip() == "pinotage: terminated (SIGTERM); cleaned up"
