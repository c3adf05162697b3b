"""unlearnlib: the helper library behind "Machine Unlearning, Reproduced".

Core modules (nothing here imports a method): ``data`` (datasets by name), ``tasks`` (forget tasks, saved and
reloaded), ``models``, ``training`` (seeded training and the checkpoint cache), ``metrics``, ``profiles``,
``results``, ``plotting`` and ``experiment`` (the loop chapters share). ``methods`` holds one module per paper
behind one registry.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .config import REPO_URL, data_root  # noqa: E402
from .data import DatasetNotAvailableError, ImageData, load_dataset  # noqa: E402
from .profiles import PROFILES, Profile, get_profile  # noqa: E402
from .tasks import ForgetTask  # noqa: E402
from .training import Recipe, resolve_device, set_seed  # noqa: E402

__all__ = ["REPO_URL", "data_root", "DatasetNotAvailableError", "ImageData", "load_dataset", "PROFILES", "Profile",
           "get_profile", "ForgetTask", "Recipe", "resolve_device", "set_seed", "__version__"]
