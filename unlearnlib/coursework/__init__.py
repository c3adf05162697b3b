"""Coursework: automatic checks of the chapters' exercises, and the student and nbgrader copies made from them.

- :func:`check` (module :mod:`.checks`, one module of checks per chapter) is what a student calls;
- :func:`chapter_results` reads what a chapter measured and chose, which a coursework copy's setup reuses;
- :mod:`.release` builds the copies (``make student``; ``python -m unlearnlib.coursework`` writes the committed
  student copies and the CPU throughput their time predictions are scaled by).
"""
from __future__ import annotations

from .checks import CheckFailed, check, registered_checks

__all__ = ["CheckFailed", "check", "registered_checks", "chapter_results"]


def chapter_results(chapter: str, profile: str) -> dict:
    """The results file a chapter wrote on ``profile`` (``results/<chapter>/<profile>.json``).

    Read from the results folder (:func:`unlearnlib.config.results_root`); where it is not there (a Colab session
    that installed only the library), the committed file is downloaded from the book's repository. Neither: a
    ``FileNotFoundError`` that says how to make it."""
    import json
    import urllib.request

    from ..config import REPO_URL, results_root

    path = results_root() / chapter / f"{profile}.json"
    if path.exists():
        return json.loads(path.read_text())
    raw = REPO_URL.replace("https://github.com/", "https://raw.githubusercontent.com/")
    url = f"{raw}/main/results/{chapter}/{profile}.json"
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return json.loads(response.read().decode())
    except Exception as error:  # offline, or no committed run on this profile
        raise FileNotFoundError(
            f"no results of chapter {chapter!r} on profile {profile!r}: {path} does not exist and {url} could not be "
            f"read ({error}). Run the chapter once on this profile (make reproduce CHAPTER={chapter} "
            f"PROFILE={profile}, or the chapter's notebook with PROFILE = {profile!r}), then run this setup again."
        ) from None
