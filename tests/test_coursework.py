"""Coursework: every chapter's exercises as a student copy and an nbgrader assignment that grades.

The slow test is what a teacher does: ``nbgrader generate_assignment`` on the source, then ``nbgrader autograde`` on
two submissions executed on smoke (after the chapter's own smoke run, whose models and results they read): the
reference solutions score every autograded point, the release as handed out scores none, and the grader does not
crash. In the reference submission, after each check, a probe turns the answer into a wrong one (the spec's
``wrong``) and runs the same checks again: each must reject it.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from unlearnlib.config import REPO_ROOT
from unlearnlib.coursework import CheckFailed, check, registered_checks
from unlearnlib.coursework.release import (CODE_STUB, HIDDEN_BEGIN, NBGRADER_CONFIG, PROBE_TAG, SOLUTION_BEGIN,
                                           STUDENT_DIR, TEACHERS_PAGE, TEXT_STUB, coursework_chapters,
                                           load_coursework, predicted_t4_seconds, source_notebook,
                                           student_copy_url, student_notebook, teachers_markdown, time_note)
from unlearnlib.toc import toc_chapters

CHAPTERS = coursework_chapters()


def _chapters_with_exercises():
    return [p.stem for p in toc_chapters() if "```{exercise}" in p.read_text()]


def test_every_chapter_with_exercises_has_coursework():
    assert CHAPTERS and CHAPTERS == _chapters_with_exercises()


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_exercise_has_an_autograded_check_and_a_written_part(name):
    cw = load_coursework(name)
    checks = registered_checks()
    for ex in cw.exercises:
        assert f'check("{ex.label}"' in ex.tests, f"{ex.label}: the visible tests must call its check"
        assert ex.label in checks, f"{ex.label}: no check registered in unlearnlib/coursework/{name}.py"
        assert ex.points > 0 and ex.answer in ex.solution, ex.label
        assert ex.wrong, f"{ex.label}: give a wrong answer ('wrong') that the check must reject"
        assert ex.written_points == 0 or ex.rubric, f"{ex.label}: a written part needs a rubric"
        assert ex.teaches, f"{ex.label}: say what it teaches (the teachers' page lists it)"


@pytest.mark.parametrize("name", CHAPTERS)
def test_the_student_copy_is_the_release_without_any_solution(name):
    source = source_notebook(name)
    student = student_notebook(source)
    text = "\n".join(c.source for c in student.cells)
    assert SOLUTION_BEGIN not in text and HIDDEN_BEGIN not in text
    cw = load_coursework(name)
    code = set("\n".join(c.source for c in student.cells if c.cell_type == "code").splitlines())
    given = set("\n".join(c.source for c in source.cells if c.cell_type == "code"
                           and not c.metadata.get("nbgrader", {}).get("solution")).splitlines())
    for ex in cw.exercises:
        for line in ex.solution.splitlines():
            if line.strip() and line not in given:
                assert line not in code, f"{ex.label}: a line of the solution is in the student copy: {line!r}"
    graded = [c for c in student.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert sum(c.source == CODE_STUB for c in graded) == len(cw.exercises)
    assert sum(c.source == TEXT_STUB for c in graded) == sum(1 for e in cw.exercises if e.written_points)
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")


@pytest.mark.parametrize("name", CHAPTERS)
def test_the_committed_student_copy_is_current(name):
    committed = nbformat.read(STUDENT_DIR / f"{name}.ipynb", as_version=4)
    fresh = student_notebook(source_notebook(name))
    assert [c.source for c in committed.cells] == [c.source for c in fresh.cells], (
        f"coursework/student/{name}.ipynb is stale: run `python -m unlearnlib.coursework copies`")


def test_the_teachers_page_lists_every_exercise_and_is_current():
    page = TEACHERS_PAGE.read_text()
    assert teachers_markdown() in page, "chapters/teachers.md is stale: run `python -m unlearnlib.coursework copies`"
    for name in CHAPTERS:
        assert student_copy_url(name) in page
        for ex in load_coursework(name).exercises:
            assert ex.teaches.replace("|", "\\|") in page


def test_times_are_measured_on_cpu_and_predicted_on_a_t4_not_typed():
    timings = {"train_images_per_s": {"small-cnn": 100.0}}
    slow = predicted_t4_seconds(100.0, "small-cnn", {"train_images_per_s": {"small-cnn": 200.0}})
    assert 0 < predicted_t4_seconds(100.0, "small-cnn", timings) < slow < 100.0  # a T4 beats 2 cores; scales
    assert predicted_t4_seconds(100.0, "small-cnn", {}) is None  # nothing measured: no prediction
    cw = load_coursework("ssd")
    note = time_note(cw, cw.exercises[0], timings)
    assert "*measured*" in note and "*predicted*" in note


def test_a_missing_results_file_says_how_to_make_it(monkeypatch, tmp_path):
    from unlearnlib import config
    from unlearnlib.coursework import chapter_results

    monkeypatch.setenv(config.RESULTS_ENV, str(tmp_path))
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(FileNotFoundError, match="make reproduce CHAPTER=ssd PROFILE=cpu"):
        chapter_results("ssd", "cpu")


def test_a_check_names_an_unknown_exercise():
    with pytest.raises(KeyError, match="labels with checks"):
        check("ex-no-such-exercise", 1)


def test_a_check_explains_a_wrong_type_without_the_solution():
    with pytest.raises(CheckFailed, match="ex-ssd-ceiling: the answer should be a dict"):
        check("ex-ssd-ceiling", [1, 2], tasks={}, full_class="x")


# -- the nbgrader flow, executed on smoke -----------------------------------------------------------------------

def _set_parameters(nb, profile="smoke", device="cpu"):
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = f'PROFILE = "{profile}"\nSEEDS = None\nDEVICE = "{device}"'
    return nb


def _probe(ex) -> str:
    """A cell that makes the answer wrong (the spec's ``wrong``), runs the exercise's checks, and says whether they
    rejected it; then restores the answer."""
    checks = textwrap.indent(ex.tests + ("\n" + ex.hidden_tests if ex.hidden_tests else ""), "    ")
    return (f"_saved = {ex.answer}\ntry:\n{textwrap.indent(ex.wrong, '    ')}\n{checks}\n"
            f"except AssertionError as error:\n    print('WRONG-ANSWER-REJECTED {ex.label}:', error)\n"
            f"else:\n    print('WRONG-ANSWER-ACCEPTED {ex.label}')\nfinally:\n    {ex.answer} = _saved")


def _with_probes(nb, cw):
    by_check = {f"{ex.label}-check": ex for ex in cw.exercises}
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        ex = by_check.get(cell.metadata.get("nbgrader", {}).get("grade_id"))
        if ex is not None:
            probe = nbformat.v4.new_code_cell(_probe(ex))
            probe.metadata["tags"] = [PROBE_TAG]
            cells.append(probe)
    nb.cells = cells
    return nb


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                          timeout=3600, env=env)  # nbgrader runs the venv's `alembic` for its gradebook


def _first_error(nb) -> str:
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.get("output_type") == "error":
                return cell.source[:300] + "\n" + "\n".join(o.get("traceback", []))[-3000:]
    return "no error output"


def _outputs(nb) -> str:
    return "\n".join(o.get("text", "") + json.dumps(o.get("data", {})) + "\n".join(o.get("traceback", []))
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.slow
@pytest.mark.parametrize("name", CHAPTERS)
def test_nbgrader_grades_the_reference_full_and_the_release_zero(name, tmp_path, smoke_chapter):
    pytest.importorskip("nbgrader")
    smoke_chapter(REPO_ROOT / "chapters" / f"{name}.ipynb")   # the models and results the copy reads
    cw = load_coursework(name)
    course = tmp_path / "course"
    (course / "source" / name).mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    source = source_notebook(name)
    nbformat.write(source, course / "source" / name / f"{name}.ipynb")
    made = _nbgrader(course, "generate_assignment", name, "--force")
    assert made.returncode == 0, made.stdout + made.stderr
    release = nbformat.read(course / "release" / name / f"{name}.ipynb", as_version=4)
    assert [c.source for c in release.cells] == [c.source for c in student_notebook(source).cells], (
        "our student copy differs from nbgrader's release")

    for student, nb in (("reference", _with_probes(_set_parameters(source), cw)),
                        ("released", _set_parameters(release))):
        target = course / "submitted" / student / name / f"{name}.ipynb"
        target.parent.mkdir(parents=True)
        nbformat.write(nb, target)
    graded = _nbgrader(course, "autograde", name, "--force")
    assert graded.returncode == 0, graded.stdout[-4000:] + graded.stderr[-4000:]

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {student: {g.cell.name: (g.auto_score, g.max_score)
                            for g in gb.find_submission_notebook(name, name, student).grades
                            if g.cell.name.endswith("-check")}
                  for student in ("reference", "released")}
    executed = nbformat.read(course / "autograded" / "reference" / name / f"{name}.ipynb", as_version=4)
    log = _outputs(executed)
    assert len(scores["reference"]) == len(cw.exercises)
    assert all(got == full for got, full in scores["reference"].values()), (scores["reference"], _first_error(executed))
    assert all(got == 0 for got, _ in scores["released"].values()), scores["released"]
    for ex in cw.exercises:
        assert f"WRONG-ANSWER-REJECTED {ex.label}" in log, f"{ex.label}: the check accepted a wrong answer\n{log[-4000:]}"
