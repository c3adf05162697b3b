"""Progress bars: notebook widgets where ipywidgets is installed (Colab, Jupyter), plain text elsewhere
(papermill, CI), so no "IProgress not found" warning ends up in a committed chapter."""
from __future__ import annotations

try:
    import ipywidgets  # noqa: F401
    from tqdm.auto import tqdm
except ImportError:
    from tqdm.std import tqdm

__all__ = ["tqdm"]
