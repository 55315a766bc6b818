"""Shared by the tests: the repository, moec from python/ (not an installed copy), the CLI."""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = os.path.dirname(HERE)
REPO = os.path.dirname(PYTHON)
FIXTURES = os.path.join(REPO, "Tests", "Fixtures")
sys.path.insert(0, PYTHON)
sys.path.insert(0, os.path.join(REPO, "scripts"))

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def moec_cli() -> str | None:
    """The moec command of the newest build in the checkout, if there is one."""
    builds = [os.path.join(REPO, ".build", c, "moec") for c in ("release", "debug")]
    builds = [b for b in builds if os.path.exists(b)]
    return max(builds, key=os.path.getmtime) if builds else None
