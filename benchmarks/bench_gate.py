"""Gate row: from the cluster reporting the rollout complete to the gate returning.

Pinotage's gate watches the Deployment, its ReplicaSets and pods; the peer is what a Jenkins
stage usually does instead: read the Deployment once a second and apply ``kubectl rollout
status``'s rules (``pipeline.rollout.verdict`` on the status alone) until they say done. Both
run against the fake API server (tests/fakes/kube) on loopback, whose event log records when
the Deployment's stored status first became complete; latency = return time - that moment.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from benchmarks import measure

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 1.0
GOAL_RATIO = 1 / 10
NAMESPACE = "bench-gate"


def run(quick: bool) -> list[dict]:
    """Measure gate latency against the 1-second poll; return the row."""
    name = "Gate latency: rollout complete → gate returns"
    goal = "≤ 1/10 of a 1 s poll loop"
    try:
        from tests.fakes.kube import FakeKube
    except ImportError as e:
        return [measure.not_measured(name, "s", goal, f"the fake API server cannot be imported ({e})")]
    with FakeKube(pod_start_s=0.2) as fake, tempfile.TemporaryDirectory() as tmp:
        bench = _Bench(fake, Path(tmp))
        ours, theirs = measure.alternate(bench.pinotage, bench.peer, runs=1 if quick else 9, warmup=0 if quick else 2)
    p, q = measure.median(ours), measure.median(theirs)
    met = p <= q * GOAL_RATIO
    return [measure.row(name, round(p, 4), round(q, 4), "s", goal, met,
                        f"ratio {p / q:.3f}; pinotage {measure.spread(ours, 's')}; peer {measure.spread(theirs, 's')}")]


class _Bench:
    def __init__(self, fake, tmp: Path):
        import kubernetes

        from pipeline.targets.kubernetes import KubernetesTarget

        self.fake = fake
        self.api = kubernetes.config.new_client_from_config(config_file=str(fake.kubeconfig(tmp / "kubeconfig")),
                                                            persist_config=False)
        kubernetes.client.CoreV1Api(self.api).create_namespace(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        self.manifest = yaml.safe_load((ROOT / "k8s/presentation/deployment.yaml").read_text())
        self.target = KubernetesTarget(self.api, namespace=NAMESPACE, manifest=self.manifest, app="presentation",
                                       rollout_s=120, lock_s=60)
        self.apps = kubernetes.client.AppsV1Api(self.api)
        self.n = 0

    def _release(self):
        from pipeline.state import Image, Release

        self.n += 1
        digest = "sha256:" + f"{self.n:064x}"
        commit = f"{self.n:040x}"
        return Release(image=Image(name="127.0.0.1:5000/bench/presentation", tag=str(self.n), digest=digest,
                                   commit=commit), commit=commit)

    def _completed_at(self, since_rv: int) -> float:
        """Return when the fake first stored this rollout's Deployment as complete (kubectl's rules)."""
        from pipeline import rollout

        far = datetime.now(timezone.utc)
        with self.fake.store.cond:
            events = [e for e in self.fake.store.events if e.rv > since_rv and e.kind.resource == "deployments"]
        for event in events:
            if isinstance(rollout.verdict(event.obj, now=far), rollout.Done):
                return event.at
        raise measure.NotMeasurable("the fake never stored a complete rollout")

    def pinotage(self) -> float:
        since = self.fake.store.rv
        decided = []

        def progress(line: str) -> None:
            # the gate prints its verdict the moment it returns it; the revision read comes after
            if "successfully rolled out" in line:
                decided.append(time.monotonic())

        self.target.deploy(self._release(), is_ancestor=lambda a, b: False, progress=progress)
        return decided[0] - self._completed_at(since)

    def peer(self) -> float:
        from pipeline import rollout

        release = self._release()
        body = copy.deepcopy(self.manifest)
        body["metadata"]["namespace"] = NAMESPACE
        body["spec"]["template"]["spec"]["containers"][0]["image"] = release.image.pinned
        since = self.fake.store.rv
        self.apps.patch_namespaced_deployment("presentation", NAMESPACE, body, field_manager="kubectl",
                                              force=True, _content_type="application/apply-patch+yaml")
        while True:
            live = json.loads(self.apps.read_namespaced_deployment("presentation", NAMESPACE,
                                                                   _preload_content=False).data)
            if isinstance(rollout.verdict(live, now=datetime.now(timezone.utc)), rollout.Done):
                break
            time.sleep(POLL_S)
        return time.monotonic() - self._completed_at(since)
