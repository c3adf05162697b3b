"""Running the book's chapters: list them from ``_toc.yml`` and execute them through papermill on a profile.

    python -m unlearnlib.book reproduce --profile cpu [--chapter foundations] [--seeds 0,1] [--allow-dirty]
                                                                                 # `make reproduce [ALLOW_DIRTY=1]`
    python -m unlearnlib.book list
    python -m unlearnlib.book student [--output _student]                        # what `make student` calls:
                                                          # coursework copies, the nbgrader course, chapters/
    python -m unlearnlib.book runs --write chapters/runs.md                      # the page of how results were made

Reproducing executes each chapter into ``.<chapter>.running.ipynb`` next to it, saved after every cell, with every
cell's output and progress bars streamed to the terminal. Only a run that succeeds replaces the chapter (outputs and
the injected parameters cell, tagged ``remove-cell`` so that the page shows only the chapter's own parameters); a
failed or interrupted one leaves the chapter as it was and keeps the partial file to look at (the next run overwrites
it). The chapter itself writes ``results/<chapter>/<profile>.json``. On the
``paper`` profile the predicted time (:mod:`unlearnlib.bench`) is printed first.

A run must be a measurement of committed code: ``reproduce`` refuses a tree with uncommitted changes to
``unlearnlib/``, ``pyproject.toml`` or a chapter's code cells (:func:`unlearnlib.provenance.uncommitted_code`).
``--allow-dirty`` overrides it, and says so where readers look: the commit carries ``+dirty``, the results file's
environment holds ``allow_dirty`` and the uncommitted files, the chapter's metadata holds the same (``unlearnlib_run``),
and the runs page marks the chapter.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from .config import REPO_ROOT
from .provenance import commit_of
from .toc import parse_seeds, toc_chapters  # noqa: F401 (re-exported: what the tests and the CLI call)


def show_source(obj) -> "IPython.display.Markdown":
    """The source code of a library function or class as a Markdown code block: chapters show the code that ran,
    never a copy of it."""
    import inspect

    from IPython.display import Markdown

    source = inspect.getsource(inspect.unwrap(obj))
    module = inspect.getmodule(inspect.unwrap(obj)).__name__
    return Markdown(f"`{module}.{obj.__name__}`\n\n```python\n{source}```")


def execute_chapter(path: Path, output: Path, *, profile: str, device: str = "auto", timeout: int | None = None,
                    extra: dict | None = None, live: bool = False) -> Path:
    """Execute one chapter with papermill, injecting ``PROFILE`` and ``DEVICE`` (and ``extra``) parameters.

    ``live`` is for long runs watched in a terminal (``make reproduce``): papermill's per-cell progress bar, every
    cell's output and progress bars streamed as they come (:func:`streamed_cell_output`), and ``output`` saved
    after every cell, so that a crash hours in leaves the cells that ran to look at. Tests keep it quiet."""
    import papermill as pm

    params = {"PROFILE": profile, "DEVICE": device, **(extra or {})}
    with streamed_cell_output(live):
        pm.execute_notebook(str(path), str(output), parameters=params, cwd=str(path.parent), kernel_name="python3",
                            language="python", progress_bar=live, log_output=live, execution_timeout=timeout,
                            request_save_on_cell_execute=live)
    return output


class _CellOutputHandler(logging.Handler):
    """Writes what papermill logs with ``log_output`` (the cells' stdout at INFO, their stderr at WARNING, and the
    cell markers) to the terminal as the kernel wrote it: progress bars keep redrawing one line with their carriage
    returns, everything else ends with a newline. Each "Executing Cell" marker starts a new line (papermill's own
    per-cell bar was drawn just before it); the "Ending Cell" markers are left out."""

    def __init__(self):
        super().__init__(logging.INFO)
        self._open_line = False  # the last write was a progress bar's line, still without its newline

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("Ending Cell"):
            return
        redraw = "\r" in text and not text.endswith("\n")
        if text.startswith("Executing Cell") or (self._open_line and not text.startswith(("\r", "\n"))):
            text = "\n" + text
        if not redraw and not text.endswith("\n"):
            text += "\n"
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        stream.write(text)
        stream.flush()
        self._open_line = redraw


@contextlib.contextmanager
def streamed_cell_output(enabled: bool = True):
    """While active (and ``enabled``), papermill's log goes to the terminal through :class:`_CellOutputHandler`
    only (not to the root logger too), and is restored afterwards."""
    if not enabled:
        yield
        return
    log = logging.getLogger("papermill")
    handler, level, propagate = _CellOutputHandler(), log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


def _edit_cells(path: Path, edit: Callable[[dict], int], metadata: dict | None = None) -> int:
    """Apply ``edit`` (which changes one cell in place and returns how many things it changed) to every cell of the
    notebook at ``path``, and merge ``metadata`` into the notebook's; write it back atomically when anything
    changed. Returns the total count."""
    import json

    from . import _io

    nb = json.loads(path.read_text())
    changed = sum(edit(cell) for cell in nb["cells"])
    if metadata:
        nb.setdefault("metadata", {}).update(metadata)
        changed += 1
    if changed:
        _io.atomic_write(path, lambda f: f.write(json.dumps(nb, indent=1, ensure_ascii=False) + "\n"), mode="w")
    return changed


def _drop_stderr(cell: dict) -> int:
    outputs = cell.get("outputs", [])
    kept = [o for o in outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    if kept != outputs:
        cell["outputs"] = kept
    return len(outputs) - len(kept)


def _remove_injected(cell: dict) -> int:
    tags = cell.get("metadata", {}).get("tags", [])
    if "injected-parameters" in tags and "remove-cell" not in tags:
        tags.append("remove-cell")
        return 1
    return 0


def strip_stderr(path: Path) -> int:
    """Remove every stderr stream output (progress-bar residue, library warnings) from the notebook at ``path``, in
    place and atomically; returns how many were removed. A reader of the book sees what the chapter prints and
    displays, not the carriage returns of a progress bar. Nothing else changes: outputs, glue records and the
    execution metadata stay as they ran."""
    return _edit_cells(path, _drop_stderr)


def hide_injected_parameters(path: Path) -> int:
    """Tag the cell that papermill injects (``injected-parameters``) ``remove-cell``, in place and atomically;
    returns how many cells changed. The rendered page then shows the chapter's own parameters cell, which a Colab
    reader edits, and not a second one with the values this run happened to use (the runs page and each chapter's
    setup cell print those)."""
    return _edit_cells(path, _remove_injected)


def _finish_for_book(path: Path, run: dict | None = None) -> None:
    """What a successful run's notebook gets before it becomes the chapter: no stderr, no injected parameters cell
    on the page, and ``run`` (the commit, the uncommitted files, ``allow_dirty``) as ``metadata.unlearnlib_run``.
    One read and one write."""
    _edit_cells(path, lambda cell: _drop_stderr(cell) + _remove_injected(cell),
                metadata={RUN_METADATA: run} if run is not None else None)


#: the notebook metadata key where ``reproduce`` records the state of the tree a chapter ran from
RUN_METADATA = "unlearnlib_run"


SOLUTION_START, SOLUTION_END = "{solution-start}", "{solution-end}"


def student_copy(nb):
    """A copy of notebook ``nb`` for students: every solution block removed (from the line that opens
    ``{solution-start}`` to the fence that closes ``{solution-end}``, with every cell in between; a block may start
    or end in the middle of a cell that also holds an exercise) and every output cleared, so the exercises stay and
    nothing gives their answers away. An unbalanced block is an error, not a silent leak."""
    import copy

    out, kept = copy.deepcopy(nb), []
    state, opened_at = "outside", None  # "outside", "inside", or "closing" (after solution-end, before its fence)
    for i, cell in enumerate(out.cells):
        if cell.cell_type == "code":
            if state == "outside":
                cell.outputs, cell.execution_count = [], None
                kept.append(cell)
            continue
        lines = []
        for line in cell.source.splitlines():
            if line.startswith("```" + SOLUTION_START):
                if state != "outside":
                    raise ValueError(f"cell {i} opens a solution while the one opened in cell {opened_at} is open")
                state, opened_at = "inside", i
            elif line.startswith("```" + SOLUTION_END):
                if state != "inside":
                    raise ValueError(f"cell {i} closes a solution that was never opened")
                state = "closing"
            elif state == "closing" and line.strip() == "```":
                state = "outside"
            elif state == "outside":
                lines.append(line)
        if state == "closing":
            raise ValueError(f"cell {i}: the {SOLUTION_END!r} fence is not closed in the same cell")
        if "\n".join(lines).strip():
            cell.source = "\n".join(lines)
            kept.append(cell)
    if state != "outside":
        raise ValueError(f"the solution opened in cell {opened_at} is never closed ({SOLUTION_END!r} missing)")
    out.cells = kept
    return out


def write_student_copies(output: Path, chapters: list[Path] | None = None) -> list[Path]:
    """Write :func:`student_copy` of every chapter (default: those in ``_toc.yml``) to ``output/<name>.ipynb``."""
    import nbformat

    from . import _io

    written = []
    for chapter in chapters if chapters is not None else toc_chapters():
        student = student_copy(nbformat.read(chapter, as_version=4))
        target = Path(output) / chapter.name
        _io.atomic_write(target, lambda f: nbformat.write(student, f), mode="w")
        written.append(target)
    return written


def run_summary(chapters: list[Path] | None = None) -> list[dict]:
    """Per chapter: the profile, hardware, seeds, run time, date and commit behind its committed outputs, read from
    the notebook's papermill metadata and the results file it wrote (nothing typed by hand); whether that run's
    code was uncommitted (``dirty``: ``+dirty`` in the commit, or ``allow_dirty`` in the results or the chapter's
    metadata) and which library files changed since its commit (``stale``: a list, empty when none, None when the
    commit is not in this repository's history)."""
    import re

    import nbformat

    from ._io import read_json
    from .provenance import library_changes_since

    rows = []
    for chapter in chapters if chapters is not None else toc_chapters():
        nb = nbformat.read(chapter, as_version=4)
        meta = nb.metadata.get("papermill", {})
        profile = meta.get("parameters", {}).get("PROFILE")
        if profile is None:
            raise ValueError(f"{chapter} has no papermill record; execute it with `make reproduce CHAPTER={chapter.stem}`")
        results = REPO_ROOT / "results" / chapter.stem / f"{profile}.json"
        payload = read_json(results, remedy="restore it from git or re-run its chapter") if results.exists() else {}
        env = payload.get("environment", {})
        hw = env.get("hardware", {})
        seeds = payload.get("config", {}).get("seeds") or sorted({r["seed"] for r in payload.get("records", [])
                                                                   if isinstance(r.get("seed"), int)})
        title = next((m.group(1) for c in nb.cells if c.cell_type == "markdown"
                      for m in [re.match(r"#\s+(.+)", c.source)] if m), chapter.stem)
        commit = env.get("commit", "–")
        run = nb.metadata.get(RUN_METADATA, {})
        allow_dirty = bool(env.get("allow_dirty") or run.get("allow_dirty"))
        rows.append({"chapter": chapter.stem, "title": title, "profile": profile,
                     "hardware": hw.get("gpu") or f"{hw.get('processor', '?')} CPU, {hw.get('cpu_count', '?')} cores",
                     "seeds": ", ".join(map(str, seeds)) or "–",
                     "minutes": round(meta.get("duration", float("nan")) / 60, 1),
                     "executed": (meta.get("start_time") or "")[:10], "commit": commit,
                     "torch": env.get("versions", {}).get("torch", "–"),
                     "dirty": str(commit).endswith("+dirty") or allow_dirty, "allow_dirty": allow_dirty,
                     "stale": library_changes_since(commit, root=REPO_ROOT) if commit_of(commit) else None})
    return rows


def runs_page(rows: list[dict]) -> str:
    """The Markdown page that lists :func:`run_summary` (``chapters/runs.md``, kept in sync by a test)."""
    lines = ["# How the committed results were made", "",
             "Every number in this book comes from a chapter executed top to bottom by `make reproduce`. This page",
             "lists, for each chapter, the profile it ran on, the hardware, the seeds, how long the whole chapter",
             "took, when it ran and from which commit (`+dirty`: with uncommitted changes to the library or to a",
             "chapter's code cells). It is generated from the notebooks' execution records and the results files by",
             "`python -m unlearnlib.book runs --write chapters/runs.md`; a test fails when it is out of date.", "",
             "| chapter | profile | hardware | seeds | run time (min) | executed | commit | torch |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| [{r['title']}]({r['chapter']}.ipynb) | `{r['profile']}` | {r['hardware']} | {r['seeds']} | "
                     f"{r['minutes']} | {r['executed']} | `{r['commit']}` | {r['torch']} |")
    lines += ["", "The `smoke` profile that CI runs on every chapter is a code check only; its outputs are never "
              "committed."]
    if all(r["profile"] != "paper" for r in rows):
        lines.append("No chapter has been run on the `paper` profile (GPU) yet.")
    lines += ["", STALENESS_HEADING, "",
              "A chapter's numbers measure the code of the commit it ran from. *Uncommitted code*: the run had",
              "uncommitted changes to the library or to a chapter's code cells (`make reproduce` refuses that unless",
              "run with `ALLOW_DIRTY=1`, which is recorded). *Library changed since*: the files of `unlearnlib/` and",
              "`pyproject.toml` that differ now from that commit; the chapter's numbers may not be what this code",
              "gives until it is re-executed.", "",
              "| chapter | ran from | uncommitted code | library changed since |", "|---|---|---|---|"]
    for r in rows:
        dirty = ("yes, with `--allow-dirty`" if r["allow_dirty"] else "yes") if r["dirty"] else "no"
        lines.append(f"| [{r['title']}]({r['chapter']}.ipynb) | `{commit_of(r['commit']) or r['commit']}` | {dirty} | "
                     f"{_stale_text(r['stale'])} |")
    lines.append("")
    return "\n".join(lines)


#: the heading of the runs page's section that depends on the repository's history (see :func:`runs_page`)
STALENESS_HEADING = "## Is each run current?"


def _stale_text(stale: list[str] | None) -> str:
    """The runs page's cell for :func:`run_summary`'s ``stale``."""
    if stale is None:
        return "unknown: the commit is not in this repository's history"
    if not stale:
        return "nothing"
    return f"{len(stale)} files: " + ", ".join(f"`{f.removeprefix('unlearnlib/')}`" for f in stale)


def _profile_names() -> list[str]:
    """The profiles ``reproduce`` accepts: every one in :data:`unlearnlib.profiles.PROFILES`."""
    from .profiles import PROFILES

    return list(PROFILES)


def reproduce_chapter(chapter: Path, *, profile: str, device: str = "auto", extra: dict | None = None,
                      run: dict | None = None) -> Path:
    """Execute ``chapter`` live into ``.<name>.running.ipynb`` next to it and replace the chapter with it only when
    the run succeeded (stderr stripped, ``run`` recorded in its metadata: see :func:`_finish_for_book`). A failed or
    interrupted run leaves the chapter untouched and keeps the partial file, saved after every cell that ran, and
    says where it is; a new run overwrites it."""
    start = time.perf_counter()
    print(f"executing {_shown(chapter)} on profile {profile} ...", flush=True)
    partial = chapter.with_name(f".{chapter.stem}.running.ipynb")
    partial.unlink(missing_ok=True)  # a stale partial from an earlier crash must not pass for this run's
    try:
        execute_chapter(chapter, partial, profile=profile, device=device, extra=extra, live=True)
    except BaseException as e:  # an error in a cell, or Ctrl-C
        if partial.exists():
            print(f"  stopped by {type(e).__name__} after {time.perf_counter() - start:.0f} s: {_shown(chapter)} is "
                  f"unchanged; the partial run (the outputs of every cell that ran, the error included) is kept in "
                  f"{_shown(partial)}", file=sys.stderr, flush=True)
        raise
    _finish_for_book(partial, run)
    os.replace(partial, chapter)
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return chapter


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it, else as it is."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def print_prediction(chapters: list[str], *, device: str = "auto", seeds: list[int] | None = None) -> None:
    """Print the predicted paper-profile time of ``chapters`` on ``device`` from a quick throughput measurement
    (:mod:`unlearnlib.bench`); a prediction that cannot be made is reported, never fatal."""
    try:
        from . import bench

        throughput = bench.measure_all(device=device, quick=True)
        lines = bench.prediction_lines(throughput, chapters, seeds)
    except Exception as e:  # the run matters more than its forecast
        print(f"no time prediction ({type(e).__name__}: {e})", file=sys.stderr)
        return
    source = next(iter(throughput.values())).source
    print(f"PREDICTED time on the paper profile ({source}, a quick measurement): training and evaluation passes only, "
          f"the unlearning methods are not included (python -m unlearnlib.bench --workload lists what is)")
    print("\n".join("  " + line for line in lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unlearnlib.book")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the chapters in _toc.yml")
    rep = sub.add_parser("reproduce", help="re-execute chapters in place on a profile")
    rep.add_argument("--profile", required=True, choices=_profile_names())
    rep.add_argument("--chapter", help="chapter name, e.g. foundations (default: all)")
    rep.add_argument("--device", default="auto")
    rep.add_argument("--seeds", type=parse_seeds, help="reported seeds, e.g. 0 or 0,1 (default: the chapter's own); "
                     "injected as SEEDS")
    rep.add_argument("--allow-dirty", action="store_true", help="run even with uncommitted changes to unlearnlib/, "
                     "pyproject.toml or a chapter's code cells (recorded in the results and on the runs page)")
    stu = sub.add_parser("student", help="write the coursework: a student copy of each chapter's exercises, the "
                         "nbgrader course (nbgrader/), and the chapters with their solutions removed (chapters/)")
    stu.add_argument("--output", default=str(REPO_ROOT / "_student"))
    runs = sub.add_parser("runs", help="print (or --write) the page listing how each chapter's outputs were made")
    runs.add_argument("--write", help="file to write, e.g. chapters/runs.md")
    args = parser.parse_args(argv)
    chapters = toc_chapters()
    if args.command == "runs":
        page = runs_page(run_summary(chapters))
        if args.write:
            from . import _io

            _io.atomic_write(args.write, lambda f: f.write(page), mode="w")
        else:
            print(page)
        return 0
    if args.command == "student":
        from .coursework.release import write_coursework

        for path in write_coursework(Path(args.output)) + write_student_copies(Path(args.output) / "chapters",
                                                                                chapters):
            print(path)
        return 0
    if args.command == "list":
        print("\n".join(str(c.relative_to(REPO_ROOT)) for c in chapters))
        return 0
    if args.chapter:
        chapters = [c for c in chapters if c.stem == args.chapter]
        if not chapters:
            print(f"no chapter named {args.chapter!r} in _toc.yml", file=sys.stderr)
            return 2
    run = check_committed(allow_dirty=args.allow_dirty)
    if run is None:
        return 2
    from .profiles import get_profile

    if get_profile(args.profile).quick:  # a code check (smoke, paper-smoke)
        print(f"warning: {args.profile} outputs must not be committed; the book shows cpu or paper runs",
              file=sys.stderr)
    if args.profile == "paper":
        print_prediction([c.stem for c in chapters], device=args.device, seeds=args.seeds)
    extra = {"SEEDS": args.seeds} if args.seeds is not None else None
    with _allow_dirty_env(run["allow_dirty"]):
        for chapter in chapters:
            reproduce_chapter(chapter, profile=args.profile, device=args.device, extra=extra, run=run)
    return 0


def check_committed(*, allow_dirty: bool = False) -> dict | None:
    """The state of the tree a reproduction would run from, as recorded in each chapter's metadata: ``commit``,
    ``uncommitted`` (the files whose changes are not committed) and ``allow_dirty``. None, with the reason on stderr,
    when the code has uncommitted changes and ``allow_dirty`` is not given: numbers must come from committed code."""
    from .provenance import uncommitted_code

    dirty = uncommitted_code(root=REPO_ROOT)
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=10).stdout.strip() if dirty is not None else ""
    if dirty is None:
        print("warning: not a git repository: the runs' commit is recorded as unknown", file=sys.stderr)
    elif dirty and not allow_dirty:
        shown = "\n".join(f"  {path}" for path in dirty)
        print(f"refusing to reproduce: uncommitted changes to the code the chapters run (the library, pyproject.toml "
              f"or a chapter's code cells):\n{shown}\nCommit them first, so that every number names the code that "
              f"made it, or run with --allow-dirty (make reproduce ALLOW_DIRTY=1), which is recorded in the results "
              f"and on the runs page.", file=sys.stderr)
        return None
    elif dirty:
        print(f"warning: --allow-dirty: running with {len(dirty)} uncommitted file(s); the results and the runs page "
              f"will say so", file=sys.stderr)
    commit = (head + ("+dirty" if dirty else "")) if head else "unknown"
    return {"commit": commit, "uncommitted": dirty or [], "allow_dirty": bool(dirty) and allow_dirty}


@contextlib.contextmanager
def _allow_dirty_env(enabled: bool):
    """While active (and ``enabled``), the chapters' kernels see ``UNLEARNLIB_ALLOW_DIRTY=1`` and record it in their
    results' environment (:func:`unlearnlib.results.environment`); restored afterwards."""
    from .provenance import ALLOW_DIRTY_ENV

    before = os.environ.get(ALLOW_DIRTY_ENV)
    if enabled:
        os.environ[ALLOW_DIRTY_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ALLOW_DIRTY_ENV, None)
        else:
            os.environ[ALLOW_DIRTY_ENV] = before


if __name__ == "__main__":
    sys.exit(main())
