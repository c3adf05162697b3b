"""Atomic file writes: a crash or a full disk never leaves a half-written result or checkpoint behind."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write ``path`` by calling ``write(fileobj)`` on a temporary file in the same folder, then renaming it.

    ``os.replace`` is atomic on POSIX and Windows, so readers see either the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=1, sort_keys=False, default=_json_default) + "\n"
    return atomic_write(path, lambda f: f.write(text), mode="w")


def read_json(path: str | os.PathLike, *, remedy: str) -> Any:
    """Parse the JSON file ``path``; a damaged file (half-written by a crash without atomic writes, or edited by
    hand) is a ValueError that names it and says what to do (``remedy``)."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"the file {path} is damaged ({e}); {remedy}") from e


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")
