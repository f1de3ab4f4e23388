"""Pinotage: push-to-deploy for Jenkins and a self-managed kubeadm cluster."""

__version__ = "0.1.0"
