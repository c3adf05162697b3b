"""An opt-in Google Drive cache for Colab: trained checkpoints, results and forget sets survive the session.

A Colab machine forgets everything when the session ends, and a ``paper`` chapter trains for hours. With

    from unlearnlib.colab import use_drive
    use_drive(True)

at the top of a chapter, Drive is mounted and the library keeps its checkpoint cache, its results and its saved
forget sets in ``MyDrive/unlearnlib/`` (``checkpoints/``, ``results/``, ``forget_sets/``), so a rerun or the next
chapter loads the models instead of training them again. It works by setting the environment variables of
:mod:`unlearnlib.config`, which every path function reads when it is called, so it takes effect at once, even after
the library was imported. Datasets stay on the Colab machine: they download in seconds and read faster there.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from . import config

#: where Colab mounts Drive; ``MyDrive`` below it is the user's own "My Drive"
COLAB_MOUNT = "/content/drive"

#: environment variable -> folder under the Drive root
DRIVE_FOLDERS = {config.CACHE_ENV: "checkpoints", config.RESULTS_ENV: "results",
                 config.FORGET_SETS_ENV: "forget_sets"}


def in_colab() -> bool:
    """Whether this Python runs in Google Colab (its ``google.colab`` package is importable)."""
    try:
        import google.colab  # noqa: F401  (importable only in Colab)
    except ImportError:
        return False
    return True


def use_drive(enabled: bool, folder: str = "unlearnlib", *, mount_point: str | os.PathLike = COLAB_MOUNT
              ) -> Path | None:
    """Keep checkpoints, results and forget sets on Google Drive, in ``MyDrive/<folder>/``, when ``enabled``.

    In Colab: mounts Drive at ``mount_point`` (Colab asks for permission once), creates the folders, points
    ``UNLEARNLIB_CACHE``, ``UNLEARNLIB_RESULTS`` and ``UNLEARNLIB_FORGET_SETS`` at them, and returns the root.
    Disabled: does nothing and returns ``None``. Enabled outside Colab: warns and does nothing (returns ``None``):
    the same notebook then runs on with the local folders it would use anyway, which is what a local run wants,
    instead of stopping on a setting that only means something in Colab."""
    if not enabled:
        return None
    if not in_colab():
        warnings.warn(f"use_drive(True) only works in Google Colab (google.colab is not importable here); "
                      f"checkpoints stay in {config.cache_root()} and results in {config.results_root()}. "
                      f"Set ${config.CACHE_ENV} / ${config.RESULTS_ENV} to keep them elsewhere.", stacklevel=2)
        return None
    from google.colab import drive

    drive.mount(str(mount_point))
    root = Path(mount_point) / "MyDrive" / folder
    for env, name in DRIVE_FOLDERS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        os.environ[env] = str(root / name)
    print(f"Google Drive: checkpoints, results and forget sets are kept in {root}")
    return root
