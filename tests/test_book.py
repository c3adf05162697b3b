"""The book builds from the committed chapters with warnings treated as errors (as `make book` does)."""
import pytest


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(built_book):
    page = (built_book / "chapters" / "foundations.html").read_text()
    assert "colab.research.google.com" in page
    assert "Traceback" not in page
