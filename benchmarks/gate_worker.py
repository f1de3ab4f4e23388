"""The gate rows' contestants, each in a quiet process of its own: the rollout gate (as in
`pinotage deploy`, it never shares an interpreter, and its GIL, with the API server it watches)
and the runner that starts `kubectl rollout status` and notes when it exits.

The benchmark serves the Kubernetes double from its own interpreter, whose server and controller
threads hold the GIL often: a gate run there, or a thread there waiting for kubectl to exit,
would wake late by up to the switch interval, a handicap neither has in real use. So each worker
loads what it needs, answers "ready", then serves each request (one JSON line with an ``id``) in a
thread, and answers one JSON line with ``at``: the CLOCK_MONOTONIC time of the verdict or of
kubectl's exit (``time.monotonic()`` is one clock for every process on Linux), which the caller
compares with its own.

    python -m benchmarks.gate_worker gate KUBECONFIG    # {"namespace", "applied", "rollout_s"} -> kind, message
    python -m benchmarks.gate_worker run                # {"argv", "timeout_s"} -> code, stdout, stderr
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120


class Worker:
    """Start a worker ("gate" or "run"); call() sends one request and waits for its answer."""

    def __init__(self, *args: str):
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.gate_worker", *args], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = _read_line(self.process, START_TIMEOUT_S)
        if ready != "ready":
            self.close()
            raise RuntimeError(f"the {args[0]} worker did not start: {ready!r}")
        self.lock = threading.Lock()
        self.waiting: dict[int, Future] = {}
        self.serial = 0
        self.reader = threading.Thread(target=self._read, name="gate-worker-reader", daemon=True)
        self.reader.start()

    def send(self, **request) -> Future:
        """Send one request; the Future holds its answer (with ``at``, a monotonic time)."""
        answer: Future = Future()
        with self.lock:
            self.serial += 1
            self.waiting[self.serial] = answer
            self.process.stdin.write(json.dumps({"id": self.serial, **request}) + "\n")
            self.process.stdin.flush()
        return answer

    def call(self, *, timeout_s: float, **request) -> dict:
        found = self.send(**request).result(timeout=timeout_s)
        if "error" in found:
            raise RuntimeError(f"the worker raised {found['error']}")
        return found

    def _read(self) -> None:
        for line in self.process.stdout:
            found = json.loads(line)
            with self.lock:
                waiter = self.waiting.pop(found["id"], None)
            if waiter is not None:
                waiter.set_result(found)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_line(process: subprocess.Popen, timeout_s: float) -> str:
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return got[0].strip() if got else ""


def main(kind: str, *args: str) -> int:
    serve = _gate(*args) if kind == "gate" else _run
    lock = threading.Lock()

    def one(request: dict) -> None:
        try:
            found = serve(request)
        except Exception as e:  # the caller's row says what broke
            found = {"error": f"{type(e).__name__}: {e}"}
        with lock:
            print(json.dumps({"id": request["id"], **found}), flush=True)

    print("ready", flush=True)
    for line in sys.stdin:
        threading.Thread(target=one, args=(json.loads(line),), daemon=True).start()
    return 0


def _gate(kubeconfig: str):
    import kubernetes

    from pipeline.targets.kubernetes.api import KubeApi
    from pipeline.targets.kubernetes.gate import gate

    api = KubeApi(kubernetes.config.new_client_from_config(config_file=kubeconfig, persist_config=False))

    def serve(request: dict) -> dict:
        verdict = gate(api, request["namespace"], request["applied"], rollout_s=request["rollout_s"],
                       unschedulable_grace_s=60, progress=lambda line: None)
        return {"kind": type(verdict).__name__, "message": verdict.message, "at": time.monotonic()}
    return serve


def _run(request: dict) -> dict:
    done = subprocess.run(request["argv"], capture_output=True, text=True, timeout=request.get("timeout_s"))
    return {"at": time.monotonic(), "code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
