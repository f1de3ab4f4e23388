"""What every command handler shares: the configuration named by the common flags."""

from __future__ import annotations

import argparse
from typing import Mapping


def load_config(args: argparse.Namespace, environ: Mapping[str, str]):
    """Load the configuration named by the common flags."""
    from pipeline import config

    return config.load(environ=environ, config_path=args.config, overrides=args.overrides, profile=args.profile)
