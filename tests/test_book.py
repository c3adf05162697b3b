"""The book builds from the committed chapters with warnings treated as errors (as `make book` does)."""
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnlib.config import REPO_ROOT


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(tmp_path):
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", str(REPO_ROOT), "-W", "-n", "--keep-going", "--path-output",
                           str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    html = tmp_path / "_build" / "html"
    page = (html / "chapters" / "foundations.html").read_text()
    assert "colab.research.google.com" in page
    assert "Traceback" not in page
