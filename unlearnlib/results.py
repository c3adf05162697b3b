"""Results are data: every experiment writes records that tables and figures are built from.

``save_results`` writes ``results/<chapter>/<profile>.json`` atomically: the records (method, task, seed, every
metric, time) plus the environment (hardware, library versions, git commit, dataset variant). ``load_results``
turns any number of those files into one pandas table, so the comparison chapter reads what the others measured.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import _io
from .config import REPO_ROOT, results_root
from .training import hardware


def git_commit() -> str:
    """The commit the code ran from, with ``+dirty`` when tracked code differs from it (``unknown`` outside git)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        # executed chapters and results are outputs of the run, not code: they do not make the code "dirty"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)chapters/*.ipynb", ":(exclude)results"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) if sha else "unknown"
    except Exception:
        return "unknown"


def environment() -> dict:
    """Hardware, versions and commit: stored with every results file."""
    import sklearn
    import torch

    from . import __version__

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                "scikit-learn": sklearn.__version__, "unlearnlib": __version__}
    for dist in ("torchvision", "timm"):  # read from metadata: importing timm would pull in huggingface_hub
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"hardware": hardware(), "versions": versions, "commit": git_commit()}


def save_results(chapter: str, profile: str, records: Sequence[dict], *, config: dict | None = None,
                 root: str | Path | None = None) -> Path:
    """Write the records of one chapter run to ``<root>/<chapter>/<profile>.json`` (atomic)."""
    if not records:
        raise ValueError("no records to save; did the experiment run?")
    root = Path(root) if root is not None else results_root()
    payload = {"chapter": chapter, "profile": profile,
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "environment": environment(), "config": config or {}, "records": list(records)}
    return _io.atomic_write_json(root / chapter / f"{profile}.json", payload)


def load_results(chapter: str | None = None, profile: str | None = None, *, root: str | Path | None = None):
    """All records of the matching results files as one DataFrame (one row per method x task x seed)."""
    import pandas as pd

    root = Path(root) if root is not None else results_root()
    rows = []
    for path in sorted(root.glob(f"{chapter or '*'}/{profile or '*'}.json")):
        remedy = f"restore it from git (git checkout -- {path}) or re-run its chapter"
        payload = _io.read_json(path, remedy=remedy)
        try:
            records, chapter_name, profile_name = payload["records"], payload["chapter"], payload["profile"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"the file {path} is damaged (not a results file: no {e}); {remedy}") from e
        env = payload.get("environment", {})
        for rec in records:
            rows.append({"chapter": chapter_name, "profile": profile_name,
                         "device": env.get("hardware", {}).get("gpu", "cpu"), "commit": env.get("commit"), **rec})
    if not rows:
        raise FileNotFoundError(f"no results under {root} for chapter={chapter!r}, profile={profile!r}; run the "
                                f"chapter first (make reproduce PROFILE=... CHAPTER=...)")
    return pd.DataFrame(rows)


def summarize(df, metrics: Iterable[str], *, by: Sequence[str] = ("task", "method"), order: Sequence[str] = (),
              digits: int = 3):
    """A table of ``mean ± std`` over seeds for each group in ``by``; methods listed in ``order`` come first."""
    import pandas as pd

    metrics = [m for m in metrics if m in df.columns]
    g = df.groupby(list(by), sort=False)[metrics]
    mean, std, n = g.mean(), g.std(ddof=1), g.size()
    fmt = lambda m, s: "–" if np.isnan(m) else (f"{m:.{digits}f}" if np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}")
    table = pd.DataFrame({c: [fmt(a, b) for a, b in zip(mean[c], std[c])] for c in metrics}, index=mean.index)
    table["seeds"] = n
    if order and "method" in by:
        rank = {m: i for i, m in enumerate(order)}
        table = table.sort_index(key=lambda idx: idx.map(lambda v: rank.get(v, len(rank)))
                                 if idx.name == "method" else idx, sort_remaining=False)
    return table
