"""What produced a stored result: the key of every resumable store, and the git state a chapter ran from.

Stores (the discovery grid's progress file, cached tuning sweeps, another chapter's tuning choices, the checkpoint
cache) keep results across runs. A stored result may be reused only when everything that produced it is the same:
the method, its hyperparameters, the request, the seed, and the code. :func:`store_key` makes that key; the code part
is :func:`code_fingerprint`, a hash of the method's module, the sibling method modules it imports and the core
modules every run uses (:data:`CORE_MODULES`). A record whose key differs is recomputed, never reused.

The code is hashed by :mod:`unlearnlib.fingerprint` (blind to docstrings, comments and formatting: rewording a
docstring keeps every stored result, changing a line of code does not).

The git side (:func:`uncommitted_code`, :func:`library_changes_since`) is what ``make reproduce`` refuses to run on
and what the runs page shows: uncommitted changes to the library (``unlearnlib/``, ``pyproject.toml``) or to a
chapter's code cells, and the library files changed since the commit a chapter ran from.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Iterable, Mapping

from .fingerprint import (TRAINING_MODULES, _imported_modules, module_path, module_source,  # noqa: F401 (re-exported)
                          modules_fingerprint, training_fingerprint)

#: the modules every method run uses (data, tasks, models, training, scoring, the registry): part of every code key
CORE_MODULES = ("metrics", "training", "models", "data", "tasks", "methods", "methods.registry")

#: labels of stored runs that are not registered methods: the untouched original and the retrain reference
REFERENCE_METHODS = ("original", "retrain")

#: the library files whose uncommitted changes make a run "dirty" (besides a chapter's code cells)
LIBRARY_PATHS = ("unlearnlib", "pyproject.toml")

#: set by ``make reproduce --allow-dirty`` for the chapter's kernel; recorded in the results' environment
ALLOW_DIRTY_ENV = "UNLEARNLIB_ALLOW_DIRTY"


# -- code fingerprints -----------------------------------------------------------------------------------------

def registered_methods() -> list[str]:
    """The names of every registered method (read from the registry, which only this module and the experiment loop
    import in the core)."""
    from .methods import REGISTRY

    return sorted(REGISTRY)


def method_modules(method: str) -> list[str]:
    """The library modules whose code a registered method runs beyond the core: its own module and the method
    modules it imports (e.g. REM imports NPO's loss from ``baselines``), followed through those, plus any other
    library module they import. The registry (``methods/__init__`` and ``methods/registry``) is core and is not
    followed: the package imports every method, and a change to one method must not re-run the others."""
    from .methods import REGISTRY
    import inspect

    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}: no code to fingerprint; registered: {', '.join(sorted(REGISTRY))}"
                         f" (and {', '.join(REFERENCE_METHODS)}, which use the core modules only)")
    own = inspect.unwrap(REGISTRY[method].function).__module__.removeprefix("unlearnlib.")
    seen, todo = set(), [own]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for imported in _imported_modules(module):
            if imported.startswith("methods.") and imported not in seen:
                todo.append(imported)
            elif imported != "methods":
                seen.add(imported)
    return sorted(seen)


def code_fingerprint(method: str | Iterable[str] | None = None) -> str:
    """The fingerprint of the code a run of ``method`` executes: the core modules (:data:`CORE_MODULES`) and
    :func:`method_modules` of ``method`` (one name or several; ``None``, ``"original"`` or ``"retrain"``: the core
    only). Changes when any line of that code changes; unchanged by docstrings, comments and formatting."""
    names = [] if method is None else [method] if isinstance(method, str) else list(method)
    modules = list(CORE_MODULES)
    for name in names:
        if name not in REFERENCE_METHODS:
            modules += method_modules(name)
    return modules_fingerprint(modules)


#: the modules whose code decides a tuning choice beyond the method's: the tuning state machine
TUNING_MODULES = ("experiment", "profiles")


def tuning_fingerprint(method: str) -> str:
    """The fingerprint of the code behind a tuning choice for ``method``: the method's code
    (:func:`code_fingerprint`) and the tuning logic (:data:`TUNING_MODULES`: scoring, grid extension, ties)."""
    names = [] if method in REFERENCE_METHODS else method_modules(method)
    return modules_fingerprint([*CORE_MODULES, *names, *TUNING_MODULES])


def tuning_fingerprints(methods: Mapping[str, str]) -> dict[str, str]:
    """``{label: tuning_fingerprint(method)}`` for a tuning run's ``{label: registered method}``: what a tuning
    config records as ``config["code"]``, so that another chapter reuses a choice only with the same code
    (:func:`unlearnlib.comparison.reuse_tuning`)."""
    return {label: tuning_fingerprint(method) for label, method in methods.items()}


def request_digest(task) -> str:
    """A hash of what a forget request is: its kind, dataset fingerprint, forget and retain sets, parameters and
    corruption (two requests with the same digest ask for the same thing)."""
    import numpy as np

    h = hashlib.sha256()
    h.update(json.dumps([task.kind, task.data.fingerprint(), task.params, task.corruption], sort_keys=True,
                        default=str).encode())
    for idx in (task.forget_idx, task.retain_idx):
        h.update(np.sort(np.asarray(idx, dtype=np.int64)).tobytes())
    return h.hexdigest()[:16]


def _canonical(value):
    """``value`` as plain JSON (a JSON string of hyperparameters is read first, so ``'{"lr": 1}'`` and
    ``{"lr": 1}`` give the same key)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def store_key(*, method: str | Iterable[str] | None, hparams: Mapping | str | None = None, request=None,
              seed: int | None = None, extra: Mapping | None = None, code: str | None = None) -> str:
    """The key of one stored result: a 16-hex-digit hash of the method (its registered name, or several), its
    hyperparameters, the request (a :class:`~unlearnlib.tasks.ForgetTask`, hashed by :func:`request_digest`, or
    any JSON-able description), the seed, ``extra`` (anything else that determines the result, e.g. the key of the
    model it started from) and the code (default: :func:`code_fingerprint` of ``method``). Reuse a stored result only
    when its key equals the key of the run you are about to make."""
    if hasattr(request, "forget_idx"):
        request = request_digest(request)
    names = method if method is None or isinstance(method, str) else sorted(method)
    payload = {"method": names, "hparams": _canonical(hparams), "request": _canonical(request), "seed": seed,
               "extra": _canonical(extra), "code": code if code is not None else code_fingerprint(method)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# -- git: uncommitted code, and what changed since a run ---------------------------------------------------------

def _git(*args: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)


def _repo_root() -> Path:
    from .config import REPO_ROOT

    return REPO_ROOT


def code_cells(notebook_text: str) -> list[str]:
    """The sources of a notebook's code cells, without the cell papermill injects: what a chapter runs, blind to
    its outputs, execution counts and metadata."""
    cells = json.loads(notebook_text).get("cells", [])
    out = []
    for cell in cells:
        if cell.get("cell_type") != "code" or "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        source = cell.get("source", "")
        out.append("".join(source) if isinstance(source, list) else source)
    return out


def chapter_code_changed(path: str | Path, *, root: Path | None = None) -> bool:
    """Whether the code cells of the chapter at ``path`` differ from HEAD's (a chapter not in HEAD has changed)."""
    root = Path(root) if root is not None else _repo_root()
    rel = Path(path).resolve().relative_to(root.resolve()).as_posix()
    committed = _git("show", f"HEAD:{rel}", root=root)
    if committed.returncode != 0:
        return True
    return code_cells(committed.stdout) != code_cells(Path(path).read_text())


def uncommitted_code(*, root: Path | None = None) -> list[str] | None:
    """The files whose uncommitted changes make a run "dirty": changed or new files under ``unlearnlib/`` and
    ``pyproject.toml``, and chapters (``chapters/*.ipynb``) whose code cells differ from HEAD's (a chapter whose
    outputs only changed, as after ``make reproduce``, is clean). Empty when clean; None outside a git repository
    (a downloaded copy), where nothing can be compared."""
    root = Path(root) if root is not None else _repo_root()
    status = _git("status", "--porcelain", "--untracked-files=all", "--", *LIBRARY_PATHS, "chapters/*.ipynb",
                  root=root)
    if status.returncode != 0:
        return None
    dirty = []
    for line in status.stdout.splitlines():
        path = line[3:].split(" -> ")[-1].strip('"')
        if path.startswith("chapters/"):
            if Path(path).name.startswith("."):  # a partial run (.<name>.running.ipynb), not a chapter
                continue
            tracked_and_present = not line.startswith("??") and (root / path).exists()
            if tracked_and_present and not chapter_code_changed(root / path, root=root):
                continue  # only outputs or metadata changed: a run's result, not its code
        dirty.append(path)
    return sorted(dirty)


def commit_of(recorded: str | None) -> str | None:
    """The commit hash in a recorded commit (``"81d3a6373e06"``, ``"caf531b1f9ba+dirty"``); None for
    ``"unknown"`` or nothing."""
    sha = (recorded or "").split("+")[0].strip()
    return sha if sha and all(c in "0123456789abcdef" for c in sha.lower()) else None


def library_changes_since(recorded: str | None, *, root: Path | None = None) -> list[str] | None:
    """The library files (``unlearnlib/``, ``pyproject.toml``) that differ between the commit a run recorded and
    this working tree (committed, uncommitted or new): what makes its results stale. None when that commit is not
    in this repository's history (a shallow clone, a rewritten history) or none was recorded."""
    root = Path(root) if root is not None else _repo_root()
    sha = commit_of(recorded)
    if sha is None or _git("cat-file", "-e", f"{sha}^{{commit}}", root=root).returncode != 0:
        return None
    changed = _git("diff", "--name-only", sha, "--", *LIBRARY_PATHS, root=root).stdout.split()
    new = _git("ls-files", "--others", "--exclude-standard", "--", *LIBRARY_PATHS, root=root).stdout.split()
    return sorted(set(changed) | set(new))
