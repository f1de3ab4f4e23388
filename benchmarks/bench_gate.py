"""Gate rows: Pinotage's rollout gate against `kubectl rollout status`, on the same rollouts.

Both watch one rollout at the same time, on the Kubernetes double (tests/fakes/kube, over TLS, so
the installed kubectl talks to it as to a cluster). Neither is timed in the interpreter that
serves the double: the gate runs in a worker process and kubectl's exit is noted by another
(``gate_worker.py``). The Deployment is k8s/presentation's, applied
server-side as `pinotage deploy` applies it, over a healthy release, with an image that

- serves: the time from the apply to each one's return; the gate must return no later. The two
  race on each rollout, so each run is a pair: the row gives both medians and the paired
  differences, and is met only when the gate's median is no later and so is its median difference;
- cannot be pulled, crashes, or runs and never gets ready: the time from the first failing pod
  (read from the double's event log) to each one's verdict. kubectl decides at the manifest's
  progressDeadlineSeconds; the gate's goal is at most 1/50 of that.

Healthy rollouts run one after another (n after a warm-up); failing ones run side by side, one
namespace and one gate worker each, because every kubectl waits out the progress deadline (300 s
in the manifest).
Quick mode (the test suite) lowers that deadline to QUICK_DEADLINE_S and says so.
"""

from __future__ import annotations

import copy
import itertools
import json
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

import yaml

from benchmarks import measure
from benchmarks.gate_worker import Worker

ROOT = measure.ROOT
# 31, not 15: the gate leads kubectl by about 3 ms a rollout, less than the spread of either; at 15 the
# two unpaired medians came out 1 ms the wrong way in one of three runs (2026-12-03) while the gate
# was first in 11 of the 15 pairs. A healthy rollout takes under a second.
HEALTHY_RUNS = {False: 31, True: 1}
FAILING_RUNS = {False: 5, True: 1}
QUICK_DEADLINE_S = 10
FAIL_GOAL_RATIO = 1 / 50
HEALTHY_ROW = "gate on a healthy rollout: apply → verdict (peer: `kubectl rollout status`, same rollout)"
HEALTHY_GOAL = "≤ 1× the peer"
FAILING = {  # kind -> (row, how the double makes it fail)
    "bad-image": "gate on an image that cannot be pulled: first failing pod → verdict (peer: `kubectl rollout status`)",
    "crash-loop": "gate on a crash loop: first failing pod → verdict (peer: `kubectl rollout status`)",
    "never-ready": "gate on a pod that never gets ready: first failing pod → verdict (peer: `kubectl rollout status`)",
}
FAIL_GOAL = "≤ 1/50 of the peer"


def run(quick: bool) -> list[dict]:
    """Measure the gate against kubectl rollout status on healthy and failing rollouts; return the rows."""
    why = ""
    if shutil.which("kubectl") is None:
        why = "kubectl is not installed (scripts/test installs it)"
    try:
        from tests.fakes.kube import FakeKube
    except ImportError as e:
        why = f"the Kubernetes double cannot be imported ({e})"
    if why:
        return [measure.not_measured(HEALTHY_ROW, "s", HEALTHY_GOAL, why),
                *[measure.not_measured(row, "s", FAIL_GOAL, why) for row in FAILING.values()]]
    missing: set[str] = set()  # images the double's registry does not hold
    with tempfile.TemporaryDirectory(prefix="pinotage-bench-gate-") as tmp, \
            FakeKube(token=secrets.token_urlsafe(16), tls=True, pod_start_s=0.2,
                     image_exists=lambda image, auths: image not in missing) as fake:
        bench = Bench(fake, Path(tmp), missing, deadline_s=QUICK_DEADLINE_S if quick else None)
        with bench.gates, bench.runner:
            rows = [bench.healthy_row(HEALTHY_RUNS[quick], warmup=0 if quick else 1)]
            rows += bench.failing_rows(FAILING_RUNS[quick])
    return rows


class Bench:
    def __init__(self, fake, tmp: Path, missing: set[str], *, deadline_s: int | None):
        import kubernetes

        self.fake = fake
        self.kubeconfig = fake.kubeconfig(tmp / "kubeconfig")
        self.cache = tmp / "kubectl-cache"
        self.api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig), persist_config=False)
        self.apps = kubernetes.client.AppsV1Api(self.api)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.manifest = yaml.safe_load((ROOT / "k8s/presentation/deployment.yaml").read_text())
        if deadline_s is not None:
            self.manifest["spec"]["progressDeadlineSeconds"] = deadline_s
        self.deadline_s = self.manifest["spec"]["progressDeadlineSeconds"]
        self.serial = itertools.count(1)  # next() is safe from the failing rows' threads
        self.missing = missing
        self.gates, self.runner = Worker("gate", str(self.kubeconfig)), Worker("run")

    # --- rows ------------------------------------------------------------------------

    def healthy_row(self, runs: int, *, warmup: int) -> dict:
        namespace = self._namespace("healthy")
        self._settled(namespace, self.gates)
        ours, theirs = [], []
        for i in range(warmup + runs):
            applied, applied_at = self._apply(namespace, self._image())
            gate_at, kubectl_at, verdict, _ = self._race(namespace, applied, self.gates)
            if verdict["kind"] != "Done":
                raise RuntimeError(f"a healthy rollout was judged {verdict}")
            if i >= warmup:
                ours.append(gate_at - applied_at)
                theirs.append(kubectl_at - applied_at)
        p, q = measure.median(ours), measure.median(theirs)
        differences = [(a - b) * 1000 for a, b in zip(ours, theirs)]
        later = measure.median(differences)
        met = p <= q and later <= 0
        note = (f"the two race on each rollout (the gate to its verdict, kubectl to its exit), neither timed in the "
                f"double's process; gate {measure.spread(ours, 's')}, "
                f"kubectl {measure.spread(theirs, 's')}; paired (gate − kubectl): median {later:+.1f} ms, "
                f"{min(differences):+.1f}…{max(differences):+.1f} ms, the gate no later in "
                f"{sum(d <= 0 for d in differences)} of {len(differences)}"
                + (f"; after {warmup} warm-up" if warmup else "; no warm-up (quick)"))
        if not met:
            note += f"; gap: median {p / q:.3f}× the peer, median paired difference {later:+.1f} ms"
        return measure.row(HEALTHY_ROW, round(p, 4), round(q, 4), "s", HEALTHY_GOAL, met, note)

    def failing_rows(self, runs: int) -> list[dict]:
        results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in FAILING}
        errors: list[str] = []

        def one(kind: str, index: int) -> None:
            try:
                results[kind].append(self._failing(kind, index))
            except Exception as e:  # a broken run becomes the row's note, not a crash of the topic
                errors.append(f"{kind}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=one, args=(kind, i)) for kind in FAILING for i in range(runs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rows = []
        for kind, row_name in FAILING.items():
            measured = results[kind]
            if not measured:
                rows.append(measure.not_measured(row_name, "s", FAIL_GOAL, "; ".join(errors)[:300] or "no run"))
                continue
            ours, theirs = [m[0] for m in measured], [m[1] for m in measured]
            p, q = measure.median(ours), measure.median(theirs)
            met = max(ours) <= FAIL_GOAL_RATIO * min(theirs)
            note = (f"progressDeadlineSeconds {self.deadline_s}"
                    + (" (quick mode lowers the manifest's)" if self.deadline_s != 300 else " (the manifest's)")
                    + f"; n={len(measured)} rollouts side by side (each kubectl waits out the deadline); gate "
                      f"{measure.spread(ours, 's')}, kubectl {measure.spread(theirs, 's')}")
            if not met:
                note += f"; gap: slowest gate {max(ours):.2f} s > 1/50 of {min(theirs):.1f} s"
            rows.append(measure.row(row_name, round(p, 3), round(q, 3), "s", FAIL_GOAL, met, note))
        return rows

    # --- one rollout ---------------------------------------------------------------------

    def _failing(self, kind: str, index: int) -> tuple[float, float]:
        """Roll a failing image out over a healthy one; return (gate, kubectl) from the first failing pod."""
        namespace = self._namespace(f"{kind}-{index}")
        with Worker("gate", str(self.kubeconfig)) as gates:  # one process per deploy, as `pinotage deploy` has
            return self._failing_in(kind, namespace, gates)

    def _failing_in(self, kind: str, namespace: str, gates: Worker) -> tuple[float, float]:
        self._settled(namespace, gates)
        image = self._image()
        if kind == "bad-image":
            image = image.replace("bench/presentation", "bench/no-such-image")
            self.missing.add(image)
        elif kind == "crash-loop":
            self.fake.crash_images.add(image)
        else:
            self.fake.unready_images.add(image)
        since = self.fake.store.rv
        applied, _ = self._apply(namespace, image)
        gate_at, kubectl_at, verdict, kubectl = self._race(namespace, applied, gates)
        if verdict["kind"] != "Failed":
            raise RuntimeError(f"the gate judged a {kind} rollout {verdict}")
        if kubectl["code"] == 0:
            raise RuntimeError(f"kubectl rollout status passed a {kind} rollout")
        failed_at = self._first_failing_pod(namespace, since, kind)
        return gate_at - failed_at, kubectl_at - failed_at

    def _race(self, namespace: str, applied: dict, gates: Worker):
        """Start kubectl rollout status, then the gate, on the rollout; return when each decided (monotonic)."""
        argv = ["kubectl", f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache}", "rollout", "status",
                "deployment/presentation", "-n", namespace, "--timeout=0"]
        kubectl = self.runner.send(argv=argv, timeout_s=self.deadline_s + 120)
        verdict = gates.call(namespace=namespace, applied=applied, rollout_s=self.deadline_s + 60,
                             timeout_s=self.deadline_s + 120)
        exited = kubectl.result(timeout=self.deadline_s + 120)
        if "error" in exited:
            raise RuntimeError(f"kubectl rollout status could not run: {exited['error']}")
        return verdict["at"], exited["at"], verdict, exited

    def _first_failing_pod(self, namespace: str, since: int, kind: str) -> float:
        with self.fake.store.cond:
            events = [e for e in self.fake.store.events
                      if e.rv > since and e.kind.resource == "pods" and e.obj["metadata"]["namespace"] == namespace]
        for event in events:
            for cs in (event.obj.get("status") or {}).get("containerStatuses") or ():
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if kind != "never-ready" and waiting.get("reason") in ("ErrImagePull", "CrashLoopBackOff"):
                    return event.at
                if kind == "never-ready" and cs.get("started") and not cs.get("ready"):
                    return event.at
        raise RuntimeError(f"the double's log shows no failing pod for {kind}")

    # --- set-up ------------------------------------------------------------------------

    def _namespace(self, name: str) -> str:
        namespace = f"bench-gate-{name}"
        self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        return namespace

    def _settled(self, namespace: str, gates: Worker) -> None:
        """Roll a healthy release out first, so each measured rollout replaces one, as a deploy does."""
        applied, _ = self._apply(namespace, self._image())
        verdict = gates.call(namespace=namespace, applied=applied, rollout_s=120, timeout_s=180)
        if verdict["kind"] != "Done":
            raise measure.NotMeasurable(f"the first rollout in {namespace} was judged {verdict}")

    def _image(self) -> str:
        return f"127.0.0.1:5000/bench/presentation@sha256:{next(self.serial):064x}"

    def _apply(self, namespace: str, image: str) -> tuple[dict, float]:
        body = copy.deepcopy(self.manifest)
        body["metadata"]["namespace"] = namespace
        body["spec"]["template"]["spec"]["containers"][0]["image"] = image
        answer = self.apps.patch_namespaced_deployment(
            "presentation", namespace, body, field_manager="pinotage", force=True,
            _content_type="application/apply-patch+yaml", _preload_content=False)
        return json.loads(answer.data), time.monotonic()
