"""Coursework copies of the chapters: one notebook per chapter that starts where its exercises start.

Each chapter's exercises are described in ``coursework/<chapter>.yml`` (next to ``_toc.yml``): the setup that
rebuilds what the exercises need (the tasks, the models from the checkpoint cache, the settings the chapter chose,
read from its results file) and, per exercise, the autograded part (the variable that holds the answer, the
reference solution, the visible and hidden calls to :func:`~unlearnlib.coursework.check`, the points) and the
written part (the question, the points, the rubric). The exercise's statement and its model answer come from the
chapter itself, so that the book and the coursework never say two things.

From them this module writes

- the **source** notebook (:func:`source_notebook`): solutions between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION``, hidden tests between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, every graded
  cell with nbgrader's metadata; ``nbgrader generate_assignment`` turns it into the release;
- the **student copy** (:func:`student_notebook`): what nbgrader releases, made without nbgrader, for Colab.

Each exercise states its time: the chapter's own solution cells as measured on ``cpu`` (papermill's durations in
the committed chapter, 2 CPU cores) and a Colab T4 time *predicted* from it with :mod:`unlearnlib.bench`'s assumed
throughput against the CPU throughput recorded in ``coursework/timings.json``.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..config import REPO_ROOT, REPO_URL

COURSEWORK_DIR = REPO_ROOT / "coursework"
TIMINGS_FILE = COURSEWORK_DIR / "timings.json"
STUDENT_DIR = COURSEWORK_DIR / "student"
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
#: what nbgrader puts where a solution was (its ClearSolutions defaults), so that our student copy is its release
CODE_STUB, TEXT_STUB = "# YOUR CODE HERE\nraise NotImplementedError()", "YOUR ANSWER HERE"
#: the tag on the cells that only the tests add to a submission (never in a copy)
PROBE_TAG = "coursework-probe"


# -- the chapter's exercises -------------------------------------------------------------------------------------

@dataclass
class ChapterExercise:
    """One ``{exercise}`` of a chapter: its label, title and statement, its model answer (the solution's prose) and
    the papermill durations of the solution's code cells (seconds, as the committed chapter ran)."""

    label: str
    title: str
    statement: str
    answer_prose: str = ""
    solution_seconds: float = 0.0
    solution_cells: int = 0

    @property
    def name(self) -> str:
        """The title, or for an untitled exercise the start of its first sentence."""
        if self.title:
            return self.title
        first = re.split(r"(?<=[.?!])\s", " ".join(self.statement.split()), maxsplit=1)[0]
        if "$" in first:  # never cut a formula in half
            first = first[:first.index("$")].rstrip() + " …"
        return first if len(first) <= 60 else first[:57].rsplit(" ", 1)[0] + " …"


_EXERCISE = re.compile(r"```\{exercise\}[ \t]*(?P<title>[^\n]*)\n(?P<body>.*?)\n```", re.S)
_SOLUTION = re.compile(r"```\{solution-start\}[ \t]*(?P<label>\S+)[^\n]*\n(?::[^\n]*\n)*```")
_ROLE = re.compile(r"\{(?:ref|doc|numref|cite:p|cite:t|cite|eq)\}`([^`<]*?)(?:\s*<[^>]*>)?`")


_GLUE = re.compile(r"\{glue:text\}`([^`:]+)(?::([^`]*))?`")


def glued_values(nb) -> dict[str, str]:
    """The values a chapter glued (``myst_nb.glue``) as they ran: name -> the text/plain record."""
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            data = out.get("data", {})
            text = data.get("application/papermill.record/text/plain", data.get("text/plain"))
            if name and text is not None:
                values[name] = text
    return values


def _glue_text(match: re.Match, glued: dict[str, str]) -> str:
    """A ``{glue:text}`` role as the chapter's page shows it: the glued value in the role's format."""
    name, spec = match.group(1), match.group(2) or ""
    if name not in glued:
        raise ValueError(f"the chapter glues no value named {name!r}")
    value = glued[name]
    try:
        return format(float(value), spec) if spec else value.strip("'\"")
    except ValueError:
        return value.strip("'\"")


def _plain(text: str, glued: dict[str, str] | None = None) -> str:
    """MyST roles as the plain text a notebook shows (``{ref}`protocol``` -> ``protocol``), and glued values as
    the chapter's run gave them."""
    text = _GLUE.sub(lambda m: _glue_text(m, glued or {}), text)
    return _ROLE.sub(lambda m: m.group(1), text).strip()


def chapter_exercises(nb) -> dict[str, ChapterExercise]:
    """The exercises of notebook ``nb`` in order, each with the prose and timing of its solution block (the block
    opened by ``{solution-start} <label>``, wherever it starts: in the exercise's cell or a later one)."""
    found: dict[str, ChapterExercise] = {}
    current: ChapterExercise | None = None
    glued = glued_values(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            if current is not None:
                current.solution_seconds += float(cell.get("metadata", {}).get("papermill", {}).get("duration") or 0)
                current.solution_cells += 1
            continue
        text, pos = cell.source, 0
        while pos < len(text):
            if current is not None:  # inside a solution: prose up to its end
                end = text.find("```{solution-end}", pos)
                chunk = text[pos:end if end >= 0 else len(text)]
                current.answer_prose = (current.answer_prose + "\n\n" + _plain(chunk, glued)).strip()
                if end < 0:
                    break
                close = text.find("```", text.find("\n", end) + 1)
                current, pos = None, (close + 3 if close >= 0 else len(text))
                continue
            ex, sol = _EXERCISE.search(text, pos), _SOLUTION.search(text, pos)
            if sol is not None and (ex is None or sol.start() < ex.start()):
                label = sol.group("label")
                if label not in found:
                    raise ValueError(f"a solution for {label!r}, which no earlier exercise has as its :label:")
                current, pos = found[label], sol.end()
            elif ex is not None:
                body = ex.group("body").split("\n")
                label = next((ln.split(":", 2)[2].strip() for ln in body if ln.startswith(":label:")), None)
                if label is None:
                    raise ValueError(f"an exercise without a :label: ({ex.group('title')!r})")
                statement = "\n".join(ln for ln in body if not ln.startswith(":")).strip()
                found[label] = ChapterExercise(label, ex.group("title").strip(), _plain(statement, glued))
                pos = ex.end()
            else:
                break
    return found


# -- the coursework description of a chapter -------------------------------------------------------------------

@dataclass
class Exercise:
    """One exercise as coursework: the chapter's statement plus the autograded and written parts of its spec."""

    chapter: ChapterExercise
    answer: str                  # the variable that holds the student's answer
    points: int                  # of the autograded part
    task: str                    # what to compute, and in which form (Markdown)
    solution: str                # the reference solution (code)
    tests: str                   # visible calls to check()
    hidden_tests: str = ""       # more calls, run only by the grader
    wrong: str = ""              # turns the reference answer into a wrong one (tests only: each check must fail)
    written_points: int = 0
    question: str = ""           # the written part (Markdown)
    rubric: str = ""             # for the teacher
    teaches: str = ""            # one line for the teachers' page

    @property
    def label(self) -> str:
        return self.chapter.label


@dataclass
class Coursework:
    """A chapter's coursework: its name and title, the setup code, the model its time is scaled by, the exercises."""

    name: str
    title: str
    setup: str
    exercises: list[Exercise] = field(default_factory=list)
    model: str = "small-cnn"
    install: str = ""

    @property
    def points(self) -> int:
        return sum(e.points + e.written_points for e in self.exercises)


def spec_path(chapter: str) -> Path:
    return COURSEWORK_DIR / f"{chapter}.yml"


def load_coursework(chapter: str | Path, *, root: Path = REPO_ROOT) -> Coursework:
    """The coursework of ``chapter`` (a name, or the notebook's path): ``coursework/<name>.yml`` joined with the
    chapter's exercises. Every exercise of the chapter must have an entry and every entry an exercise."""
    import nbformat
    import yaml

    name = Path(chapter).stem
    nb = nbformat.read(root / "chapters" / f"{name}.ipynb", as_version=4)
    spec = yaml.safe_load((root / "coursework" / f"{name}.yml").read_text())
    exercises = chapter_exercises(nb)
    entries = {e["label"]: e for e in spec.get("exercises", [])}
    missing, unknown = [l for l in exercises if l not in entries], [l for l in entries if l not in exercises]
    if missing or unknown:
        raise ValueError(f"coursework/{name}.yml and chapters/{name}.ipynb disagree: exercises without an entry "
                         f"{missing}, entries without an exercise {unknown}")
    title = next((c.source.splitlines()[0].lstrip("# ").strip() for c in nb.cells
                  if c.cell_type == "markdown" and c.source.startswith("# ")), name)
    install = next((c.source for c in nb.cells if c.cell_type == "code" and "pip" in c.source
                    and "find_spec" in c.source), "")
    out = Coursework(name, title, spec["setup"].rstrip(), model=spec.get("model", "small-cnn"), install=install)
    for label, chapter_exercise in exercises.items():
        e = entries[label]
        written = e.get("written") or {}
        out.exercises.append(Exercise(
            chapter_exercise, e["answer"], int(e["points"]), e["task"].strip(), e["solution"].rstrip(),
            e["tests"].rstrip(), (e.get("hidden_tests") or "").rstrip(), (e.get("wrong") or "").rstrip(),
            int(written.get("points", 0)), (written.get("question") or "").strip(),
            (written.get("rubric") or "").strip(), (e.get("teaches") or "").strip()))
    return out


# -- times ----------------------------------------------------------------------------------------------------------

def load_timings(path: Path = TIMINGS_FILE) -> dict:
    """The CPU throughput the T4 predictions are scaled by (``python -m unlearnlib.coursework timings`` writes it)."""
    return json.loads(path.read_text()) if path.exists() else {}


def predicted_t4_seconds(cpu_seconds: float, model: str, timings: dict | None = None) -> float | None:
    """A PREDICTION, not a measurement: ``cpu_seconds`` scaled by the ratio of the CPU's measured training
    throughput (``timings``) to the T4's assumed one (:func:`unlearnlib.bench.assumed_throughput`) for ``model``.
    None when no CPU throughput was recorded for ``model``."""
    from ..bench import assumed_throughput

    timings = load_timings() if timings is None else timings
    cpu_rate = (timings.get("train_images_per_s") or {}).get(model)
    if not cpu_rate:
        return None
    return cpu_seconds * cpu_rate / assumed_throughput("t4")[model].train


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.0f} min"


def time_note(cw: Coursework, ex: Exercise, timings: dict | None = None) -> str:
    """The sentence that says how long an exercise takes: measured on 2 CPU cores, predicted on a Colab T4."""
    if ex.chapter.solution_cells == 0:
        return "*Time:* no computation beyond the setup (a written answer and a few lines of code)."
    cpu = ex.chapter.solution_seconds
    t4 = predicted_t4_seconds(cpu, cw.model, timings)
    gpu = (f"; on a Colab T4 GPU {_duration(t4)} (*predicted* by `unlearnlib.bench`, not measured)"
           if t4 is not None else "")
    return (f"*Time:* {_duration(cpu)} on 2 CPU cores (*measured*: the chapter's own solution, `cpu` profile){gpu}.")


# -- notebooks ------------------------------------------------------------------------------------------------------

def _meta(grade_id: str, *, solution: bool = False, grade: bool = False, points: int | None = None,
          locked: bool = False) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
            "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _solution_region(code: str) -> str:
    return f"{SOLUTION_BEGIN}\n{code}\n{SOLUTION_END}"


def source_notebook(chapter: str | Path, *, timings: dict | None = None, root: Path = REPO_ROOT):
    """The nbgrader source notebook of ``chapter``'s coursework, solutions and hidden tests included."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    cw = load_coursework(chapter, root=root)
    link = f"{REPO_URL}/blob/main/chapters/{cw.name}.ipynb"
    colab = student_copy_url(cw.name)
    cells = [new_markdown_cell(
        f"# Exercises: {cw.title}\n\n"
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})\n\n"
        f"The exercises of the chapter [{cw.title}]({link}), ready to run and to grade ({cw.points} points). Read "
        f"the chapter first: the exercises use its tasks, its models and the settings it chose.\n\n"
        "**How to work.** Run the cells from the top. The setup reads the chapter's trained models from the "
        "checkpoint cache (in a fresh session it trains what is missing, once) and the settings the chapter chose "
        "from its results file. Each exercise then has\n\n"
        "1. a code cell where you write your solution in place of `raise NotImplementedError()` and store the "
        "answer in the variable it names;\n"
        "2. a cell that checks your answer: it tells you what is wrong and where to look, or prints a check mark "
        "(the grader runs more checks of the same kind);\n"
        "3. a text cell for the written answer, which your teacher grades.\n\n"
        "The checks test properties that follow from *your* run (a different seed or machine gives different "
        "numbers that pass all the same), so there is nothing to copy from the book's tables.")]
    cells[0].metadata.update(_meta("intro", locked=True))
    if cw.install:
        cells.append(new_code_cell(cw.install))
        cells[-1].metadata.update(_meta("install", locked=True))
    cells.append(new_code_cell(
        'PROFILE = "cpu"   # the chapter\'s committed profile; "smoke" runs in seconds (for a first try)\n'
        "SEEDS = None      # None: the profile's seeds\n"
        'DEVICE = "auto"   # "auto" picks CUDA, then MPS, then the CPU'))
    cells[-1].metadata["tags"] = ["parameters"]
    cells.append(new_code_cell("from unlearnlib.coursework import check\n\n" + cw.setup))
    cells[-1].metadata.update(_meta("setup", locked=True))
    for n, ex in enumerate(cw.exercises, 1):
        ch = ex.chapter
        head = new_markdown_cell(f"## Exercise {n}" + (f": {ch.title}" if ch.title else "") + f"\n\n{ch.statement}\n\n"
                                 f"{time_note(cw, ex, timings)}\n\n"
                                 f"**Code ({ex.points} points).** {ex.task}")
        head.metadata.update(_meta(f"{ex.label}-statement", locked=True))
        answer = new_code_cell(_solution_region(ex.solution))
        answer.metadata.update(_meta(f"{ex.label}-answer", solution=True))
        tests = ex.tests + (f"\n{HIDDEN_BEGIN}\n{ex.hidden_tests}\n{HIDDEN_END}" if ex.hidden_tests else "")
        test = new_code_cell(tests)
        test.metadata.update(_meta(f"{ex.label}-check", grade=True, points=ex.points, locked=True))
        cells += [head, answer, test]
        if ex.written_points:
            q = new_markdown_cell(f"**In words ({ex.written_points} points).** {ex.question}")
            q.metadata.update(_meta(f"{ex.label}-question", locked=True))
            model_answer = (ch.answer_prose or "").strip()
            written = new_markdown_cell(f"{model_answer}\n\n**Rubric** ({ex.written_points} points)\n\n{ex.rubric}")
            written.metadata.update(_meta(f"{ex.label}-written", solution=True, grade=True,
                                          points=ex.written_points))
            cells += [q, written]
    for i, cell in enumerate(cells):  # stable ids: a regenerated copy differs only where its content does
        cell.id = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell-{i}"
    nb = new_notebook(cells=cells)
    nb.metadata.update({"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                        "language_info": {"name": "python"}})
    nbformat.validate(nb)
    return nb


def _strip_region(text: str, begin: str, end: str, replacement: str | None) -> str:
    """``text`` with every ``begin``...``end`` region (marker lines included) replaced by ``replacement`` at the
    begin line's indentation (or removed when None). An unbalanced region is an error, not a leak."""
    out, inside, indent = [], False, ""
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped == begin:
            if inside:
                raise ValueError(f"{begin!r} opened twice")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            if replacement is not None:
                out += [indent + r for r in replacement.split("\n")]
        elif stripped == end:
            if not inside:
                raise ValueError(f"{end!r} without {begin!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{begin!r} is never closed")
    return "\n".join(out)


def student_notebook(source):
    """The student copy of a source notebook: each solution region replaced as nbgrader replaces it, the hidden
    tests and the written model answers removed, no outputs. Equal, cell by cell, to nbgrader's release."""
    nb = copy.deepcopy(source)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.source = _strip_region(cell.source, HIDDEN_BEGIN, HIDDEN_END, None)
            if meta.get("solution"):
                cell.source = _strip_region(cell.source, SOLUTION_BEGIN, SOLUTION_END, CODE_STUB)
        elif meta.get("solution"):
            cell.source = TEXT_STUB
    return nb


def coursework_chapters(root: Path = REPO_ROOT) -> list[str]:
    """The chapters (in book order) that have exercises, hence a ``coursework/<name>.yml``."""
    from ..toc import toc_chapters

    return [p.stem for p in toc_chapters(root) if (root / "coursework" / f"{p.stem}.yml").exists()]


NBGRADER_CONFIG = '''# nbgrader configuration of the book's coursework (written by `make student`)
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "machine-unlearning-reproduced"
c.CourseDirectory.root = __import__("os").path.dirname(__file__)
c.ExecutePreprocessor.timeout = 3600  # an exercise on the cpu profile may train for minutes
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
'''


def write_coursework(output: Path, chapters: Sequence[str] | None = None, *, timings: dict | None = None) -> list[Path]:
    """Write, for every chapter with exercises: the student copy ``output/<name>.ipynb`` and the nbgrader course
    ``output/nbgrader/`` (``nbgrader_config.py`` and ``source/<name>/<name>.ipynb``). Returns the paths written."""
    import nbformat

    from .. import _io

    output, written = Path(output), []
    for name in chapters if chapters is not None else coursework_chapters():
        source = source_notebook(name, timings=timings)
        for target, nb in ((output / "nbgrader" / "source" / name / f"{name}.ipynb", source),
                           (output / f"{name}.ipynb", student_notebook(source))):
            _io.atomic_write(target, lambda f, nb=nb: nbformat.write(nb, f), mode="w")
            written.append(target)
    config = output / "nbgrader" / "nbgrader_config.py"
    _io.atomic_write(config, lambda f: f.write(NBGRADER_CONFIG), mode="w")
    return written + [config]


# -- the teachers' page ---------------------------------------------------------------------------------------------

TEACHERS_PAGE = REPO_ROOT / "chapters" / "teachers.md"
_TABLE_BEGIN, _TABLE_END = "<!-- coursework: generated by unlearnlib.coursework -->", "<!-- /coursework -->"


def student_copy_url(chapter: str, *, colab: bool = True) -> str:
    """Where a student opens the committed student copy of ``chapter``: Colab, or the file on GitHub."""
    path = f"{REPO_URL.split('github.com/')[1]}/blob/main/coursework/student/{chapter}.ipynb"
    return f"https://colab.research.google.com/github/{path}" if colab else f"https://github.com/{path}"


def teachers_markdown(chapters: Sequence[str] | None = None, *, timings: dict | None = None) -> str:
    """The generated part of the teachers' page: per chapter, a Colab link to the student copy and one row per
    exercise with what it teaches, its points (code + written) and its time (measured on 2 CPU cores, predicted on
    a Colab T4)."""
    lines = []
    for name in chapters if chapters is not None else coursework_chapters():
        cw = load_coursework(name)
        lines += [f"### {cw.title}", "",
                  f"[Student copy in Colab]({student_copy_url(name)}) · [on GitHub]({student_copy_url(name, colab=False)})"
                  f" · {cw.points} points · nbgrader assignment `{name}`", "",
                  "| exercise | what it teaches | points (code + written) | time: 2 CPU cores (measured) | "
                  "time: Colab T4 (predicted) |", "|---|---|---|---|---|"]
        for n, ex in enumerate(cw.exercises, 1):
            cpu = ex.chapter.solution_seconds if ex.chapter.solution_cells else 0.0
            t4 = predicted_t4_seconds(cpu, cw.model, timings) if cpu else 0.0
            teaches = ex.teaches.replace("|", "\\|")  # a |D| inside a table cell
            lines.append(f"| {n}. {ex.chapter.name} | {teaches} | {ex.points} + {ex.written_points} | "
                         f"{_duration(cpu) if cpu else 'none beyond the setup'} | "
                         f"{_duration(t4) if t4 else ('none' if not cpu else 'not predicted')} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def update_teachers_page(path: Path = TEACHERS_PAGE, *, timings: dict | None = None) -> bool:
    """Rewrite the generated part of the teachers' page between its markers; True when it changed."""
    text = path.read_text()
    start, end = text.index(_TABLE_BEGIN) + len(_TABLE_BEGIN), text.index(_TABLE_END)
    new = text[:start] + "\n\n" + teachers_markdown(timings=timings) + "\n" + text[end:]
    if new == text:
        return False
    from .. import _io

    _io.atomic_write(path, lambda f: f.write(new), mode="w")
    return True
