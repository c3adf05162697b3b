"""Results are data: every experiment writes records that tables and figures are built from.

``save_results`` writes ``results/<chapter>/<profile>.json`` atomically: the records (method, task, seed, every
metric, time) plus the environment (hardware, library versions, git commit, dataset variant). ``load_results``
turns any number of those files into one pandas table, so the comparison chapter reads what the others measured.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import os
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import _io
from .config import REPO_ROOT, results_root
from .provenance import ALLOW_DIRTY_ENV
from .training import hardware


def git_commit() -> str:
    """The commit the code ran from, with ``+dirty`` when the code differs from it (``unknown`` outside git).

    "The code" is what ``make reproduce`` refuses to run with uncommitted changes
    (:func:`~unlearnlib.provenance.uncommitted_code`): the library (``unlearnlib/``, ``pyproject.toml``) and the
    chapters' code cells. A chapter's outputs and the results files are outputs of a run, not code; so are the
    tests and the prose around the code."""
    from .provenance import uncommitted_code

    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        return (sha + ("+dirty" if uncommitted_code() else "")) if sha else "unknown"
    except Exception:
        return "unknown"


def environment() -> dict:
    """Hardware, versions and commit: stored with every results file. A dirty run (``+dirty``) also lists the
    ``uncommitted`` files, and ``allow_dirty`` is True when ``make reproduce --allow-dirty`` ran it."""
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
    env = {"hardware": hardware(), "versions": versions, "commit": git_commit()}
    if env["commit"].endswith("+dirty"):
        from .provenance import uncommitted_code

        env["uncommitted"] = uncommitted_code()  # the files that differ from the commit
    if os.environ.get(ALLOW_DIRTY_ENV) == "1":  # make reproduce ALLOW_DIRTY=1: a run its author knew was dirty
        env["allow_dirty"] = True
    return env


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
    """A table of ``mean ± std`` over seeds for each group in ``by``; methods listed in ``order`` come first.

    Diverged runs (``diverged`` True, :func:`unlearnlib.metrics.is_diverged`; a missing field means not diverged)
    are left out of every number, as are collapsed models (:func:`unlearnlib.metrics.is_collapsed`): ``seeds`` then
    reads "3 of 5" and a ``diverged`` column says "diverged on 2 of 5 seeds" (or "collapsed on ..."); a group diverged on every seed reads that in place of every number. Without diverged runs the table is
    as it always was (``seeds`` the number of runs)."""
    import pandas as pd

    from .stats import collapsed_flags, diverged_flags, seeds_note

    metrics = [m for m in metrics if m in df.columns]
    flags = diverged_flags(df)
    collapsed = collapsed_flags(df).groupby([df[c] for c in by], sort=False).sum()
    kept = df[~flags]
    g = kept.groupby(list(by), sort=False)[metrics]
    ran = df.groupby(list(by), sort=False).size()
    gone = flags.groupby([df[c] for c in by], sort=False).sum().reindex(ran.index).astype(int)
    mean, std = g.mean().reindex(ran.index), g.std(ddof=1).reindex(ran.index)
    fmt = lambda m, s: "–" if np.isnan(m) else (f"{m:.{digits}f}" if np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}")
    table = pd.DataFrame({c: [fmt(a, b) for a, b in zip(mean[c], std[c])] for c in metrics}, index=ran.index)
    collapsed = collapsed.reindex(ran.index).fillna(0).astype(int)
    notes = pd.Series([seeds_note(k, n, collapsed=c) for k, n, c in zip(gone, ran, collapsed)], index=ran.index)
    none_left = (gone == ran).to_numpy()
    for c in metrics:
        table.loc[none_left, c] = notes[none_left]
    if gone.any():
        table["seeds"] = [str(n) if k == 0 else f"{n - k} of {n}" for k, n in zip(gone, ran)]
        table["diverged"] = notes
    else:
        table["seeds"] = ran
    if order and "method" in by:
        rank = {m: i for i, m in enumerate(order)}
        table = table.sort_index(key=lambda idx: idx.map(lambda v: rank.get(v, len(rank)))
                                 if idx.name == "method" else idx, sort_remaining=False)
    return table
