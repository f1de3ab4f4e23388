"""The Kubernetes target, one module per part.

- ``target``: ``KubernetesTarget`` (deploy, rollback, what is live) and ``make_target``;
- ``lease``: the app's deploy lock, a ``coordination.k8s.io`` Lease;
- ``gate``: the watch-based rollout gate;
- ``ledger``: ``ClusterLedger``, the deploy records in a ConfigMap;
- ``pull_secret``: the registry login the nodes pull with, one dockerconfigjson Secret;
- ``api``: reading an object (404 means none) and saying what the API server refused.
"""

from pipeline.targets.kubernetes.target import KubernetesTarget, make_target

__all__ = ["KubernetesTarget", "make_target"]
