"""The book's chapters, as ``_toc.yml`` lists them, and the seeds a command line names: what both command-line tools
(:mod:`unlearnlib.book`, which runs chapters, and :mod:`unlearnlib.bench`, which predicts their cost) need, kept
here so that neither imports the other."""
from __future__ import annotations

import argparse
from pathlib import Path

from .config import REPO_ROOT


def toc_chapters(root: Path = REPO_ROOT) -> list[Path]:
    """The notebooks listed in ``_toc.yml``, in book order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").exists()]


def parse_seeds(text: str) -> list[int]:
    """``"0"`` or ``"0,1,2"`` -> ``[0, 1, 2]`` (what ``--seeds`` takes); a clear error for anything else."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds takes distinct integers separated by commas, e.g. 0 or 0,1,2; "
                                         f"got {text!r}")
    return seeds
