"""One place for the project's facts: repository URL, folders and environment variables.

Every other module (and the chapters' Colab install cell, checked by a test) takes these values from here.
"""
from __future__ import annotations

import os
from pathlib import Path

#: Where the book and the library live. The Colab install cell and the launch buttons in ``_config.yml`` use it;
#: ``tests/test_project.py`` fails if they drift apart.
REPO_URL = "https://github.com/unlearning-reproduced/machine-unlearning-reproduced"

#: The repository root when unlearnlib runs from a checkout (``pip install -e .``), else the current folder.
_PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = _PACKAGE_DIR.parent if (_PACKAGE_DIR.parent / "pyproject.toml").exists() else Path.cwd()

DATA_ENV = "UNLEARNLIB_DATA"
CACHE_ENV = "UNLEARNLIB_CACHE"
RESULTS_ENV = "UNLEARNLIB_RESULTS"
FORGET_SETS_ENV = "UNLEARNLIB_FORGET_SETS"


def data_root() -> Path:
    """Dataset folder: ``$UNLEARNLIB_DATA`` if set, else ``<repo>/data``."""
    return Path(os.environ.get(DATA_ENV, REPO_ROOT / "data")).expanduser()


def cache_root() -> Path:
    """Checkpoint cache: ``$UNLEARNLIB_CACHE`` if set, else ``<data root>/checkpoints``."""
    return Path(os.environ.get(CACHE_ENV, data_root() / "checkpoints")).expanduser()


def results_root() -> Path:
    """Results folder: ``$UNLEARNLIB_RESULTS`` if set, else ``<repo>/results``."""
    return Path(os.environ.get(RESULTS_ENV, REPO_ROOT / "results")).expanduser()


def forget_sets_root() -> Path:
    """Where saved forget tasks live (tracked in git so that forget sets are fixed): ``$UNLEARNLIB_FORGET_SETS``
    if set, else ``<data root>/forget_sets``."""
    return Path(os.environ.get(FORGET_SETS_ENV, data_root() / "forget_sets")).expanduser()
