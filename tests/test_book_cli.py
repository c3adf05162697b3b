"""`python -m unlearnlib.book reproduce` replaces a chapter only when its run succeeded."""
import nbformat

from unlearnlib import book
from unlearnlib.config import REPO_ROOT


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


def test_student_copies_keep_every_exercise_and_drop_every_solution(tmp_path):
    written = book.write_student_copies(tmp_path)
    assert {p.name for p in written} == {c.name for c in book.toc_chapters()}
    for path, chapter in zip(written, book.toc_chapters()):
        original, student = nbformat.read(chapter, as_version=4), nbformat.read(path, as_version=4)
        text = "\n".join(c.source for c in student.cells)
        assert "{solution-start}" not in text and "{solution-end}" not in text
        count = lambda nb: sum(c.source.count("{exercise}") for c in nb.cells)  # noqa: E731
        assert count(student) == count(original)
        assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")
        assert len(student.cells) < len(original.cells) or "{solution-start}" not in str(original)


def test_an_unclosed_solution_is_an_error_not_a_leak():
    md = nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook(cells=[md("```{exercise}\nQ\n```"), md("```{solution-start} q\n```"), md("A")])
    try:
        book.student_copy(nb)
    except ValueError as e:
        assert "never closed" in str(e)
    else:
        raise AssertionError("an unclosed solution must raise")


def test_the_runs_page_lists_every_chapter_and_is_up_to_date():
    from unlearnlib.book import run_summary, runs_page, toc_chapters

    rows = run_summary()
    assert [r["chapter"] for r in rows] == [c.stem for c in toc_chapters()]
    for r in rows:
        assert r["profile"] in {"cpu", "paper"} and r["minutes"] > 0 and r["seeds"] != "–", r
    committed = (REPO_ROOT / "chapters" / "runs.md").read_text()
    assert committed == runs_page(rows), "regenerate: python -m unlearnlib.book runs --write chapters/runs.md"
