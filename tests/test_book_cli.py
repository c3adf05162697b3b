"""`python -m unlearnlib.book reproduce` replaces a chapter only when its run succeeded."""
import nbformat
import pytest

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
    assert (chapter.parent / ".demo.running.ipynb").exists(), "the partial run is kept to look at"


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
    committed, page = (REPO_ROOT / "chapters" / "runs.md").read_text(), runs_page(rows)
    if _shallow_clone():  # the commits the chapters ran from are not fetched: what changed since cannot be listed
        committed, page = (text.split(book.STALENESS_HEADING)[0] for text in (committed, page))
    assert committed == page, ("regenerate (after `git add`, so that it lists what this commit changes): "
                               "python -m unlearnlib.book runs --write chapters/runs.md")


def _shallow_clone() -> bool:
    import subprocess

    out = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=REPO_ROOT, capture_output=True,
                         text=True).stdout.strip()
    return out == "true"


# -- reproduce: live progress, the partial file, --seeds, the paper prediction ------------------------------------

def demo_chapter(tmp_path, monkeypatch, *sources, name="demo"):
    """A throwaway chapter ``chapters/<name>.ipynb`` (a parameters cell, then ``sources``) that ``reproduce`` sees
    as the only chapter of the book."""
    chapter = tmp_path / "chapters" / f"{name}.ipynb"
    chapter.parent.mkdir(exist_ok=True)
    params = nbformat.v4.new_code_cell("PROFILE = 'cpu'\nSEEDS = None\nDEVICE = 'auto'",
                                       metadata={"tags": ["parameters"]})
    nbformat.write(nbformat.v4.new_notebook(cells=[params, *map(nbformat.v4.new_code_cell, sources)]), chapter)
    monkeypatch.setattr(book, "toc_chapters", lambda: [chapter])
    monkeypatch.setattr(book, "REPO_ROOT", tmp_path)
    return chapter


def outputs(path):
    """Every stream text and error name in the notebook at ``path``, in order."""
    nb = nbformat.read(path, as_version=4)
    return [o.get("text", o.get("ename")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_a_successful_run_replaces_the_chapter_and_streams_its_output(tmp_path, monkeypatch, capsys):
    chapter = demo_chapter(tmp_path, monkeypatch, "print('hello from the chapter')")
    stale = chapter.with_name(".demo.running.ipynb")
    stale.write_text("left by an earlier crash")
    assert book.main(["reproduce", "--profile", "smoke", "--chapter", "demo"]) == 0
    assert outputs(chapter) == ["hello from the chapter\n"]
    assert not stale.exists(), "the partial file became the chapter"
    assert "hello from the chapter" in capsys.readouterr().out, "the cell's output is streamed as it runs"


def test_a_failed_run_keeps_the_partial_file_with_the_cells_that_ran(tmp_path, monkeypatch, capsys):
    chapter = demo_chapter(tmp_path, monkeypatch, "print('first cell ran')", "raise RuntimeError('boom')",
                           "print('never runs')")
    partial = chapter.with_name(".demo.running.ipynb")
    partial.write_text("left by an earlier crash")
    before = chapter.read_bytes()
    with pytest.raises(Exception, match="boom"):
        book.main(["reproduce", "--profile", "smoke", "--chapter", "demo"])
    assert chapter.read_bytes() == before
    assert outputs(partial) == ["first cell ran\n", "RuntimeError"], "overwritten by this run, up to the error"
    assert str(partial.relative_to(tmp_path)) in capsys.readouterr().err, "the message says where it is"


def test_seeds_are_injected_into_the_chapter(tmp_path, monkeypatch):
    chapter = demo_chapter(tmp_path, monkeypatch, "print('SEEDS', SEEDS)")
    book.main(["reproduce", "--profile", "smoke", "--chapter", "demo", "--seeds", "0,1"])
    assert outputs(chapter) == ["SEEDS [0, 1]\n"]
    cells = nbformat.read(chapter, as_version=4).cells
    injected = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "SEEDS = [0, 1]" in injected[0].source
    assert "remove-cell" in injected[0].metadata["tags"], "the page shows the chapter's own parameters only"
    own = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert own and "remove-cell" not in own[0].metadata["tags"], "a Colab reader sees what to edit"


def test_without_seeds_the_chapter_keeps_its_own(tmp_path, monkeypatch):
    chapter = demo_chapter(tmp_path, monkeypatch, "print('SEEDS', SEEDS)")
    book.main(["reproduce", "--profile", "smoke", "--chapter", "demo"])
    assert outputs(chapter) == ["SEEDS None\n"]


@pytest.mark.parametrize("bad", ["", "a", "0,0", "1.5"])
def test_malformed_seeds_are_refused_before_anything_runs(bad, tmp_path, monkeypatch):
    demo_chapter(tmp_path, monkeypatch, "print('ran')")
    with pytest.raises(SystemExit):
        book.main(["reproduce", "--profile", "smoke", "--chapter", "demo", "--seeds", bad])
    assert not (tmp_path / "chapters" / ".demo.running.ipynb").exists()


def test_on_the_paper_profile_the_predicted_time_comes_first(tmp_path, monkeypatch, capsys):
    from unlearnlib import bench

    measured = {name: bench.Throughput(name, 2000.0, 8000.0, 64, 4096, "measured on test")
                for name in bench.bench_models()}
    monkeypatch.setattr(bench, "measure_all", lambda **kw: measured)
    demo_chapter(tmp_path, monkeypatch, "print('the chapter ran')", name="foundations")
    book.main(["reproduce", "--profile", "paper", "--chapter", "foundations", "--seeds", "0"])
    out = capsys.readouterr().out
    assert out.index("PREDICTED") < out.index("executing") < out.index("the chapter ran")
    expected = bench.format_duration(bench.predict_chapter_seconds("foundations", measured, seeds=[0]))
    row = next(line for line in out.splitlines() if line.split()[:1] == ["foundations"])
    assert row.endswith(expected) and row.split()[1] == "1", "one seed, as asked"
