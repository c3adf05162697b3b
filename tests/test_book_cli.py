"""`python -m unlearnlib.book reproduce` replaces a chapter only when its run succeeded."""
import nbformat

from unlearnlib import book


def test_a_failed_reproduction_leaves_the_committed_chapter_untouched(tmp_path, monkeypatch):
    chapter = tmp_path / "chapters" / "demo.ipynb"
    chapter.parent.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("PROFILE = 'cpu'", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("raise RuntimeError('boom')")])
    nbformat.write(nb, chapter)
    before = chapter.read_bytes()
    monkeypatch.setattr(book, "toc_chapters", lambda: [chapter])
    monkeypatch.setattr(book, "REPO_ROOT", tmp_path)
    try:
        book.main(["reproduce", "--profile", "smoke", "--chapter", "demo"])
    except Exception:
        pass
    assert chapter.read_bytes() == before
    assert not list(chapter.parent.glob(".*running*")), "no partial file is left behind"
