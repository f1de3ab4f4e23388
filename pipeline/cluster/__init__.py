"""Rebuild the kubeadm cluster: Packer box, Vagrant VMs, kubeadm, network add-on, smoke test, redeploy.

Each step (``steps.py``) detects the state it finds before it acts, so running it again
converges instead of failing, and a rerun of ``rebuild`` after a failure resumes. Every
command goes through one ``Executor`` (``executor.py``), which also shows them for
``--dry-run``. Reading a command's answer is kept apart in pure functions (``facts.py``);
what the nodes are called and where they live is ``topology.py``.
"""
