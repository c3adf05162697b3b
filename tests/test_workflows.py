"""The GitHub Actions workflows do what the README says: ``tests.yml`` runs ``make test`` on every push and pull
request, ``book.yml`` builds the book with ``make book`` on a push to main and deploys it to GitHub Pages.

They are checked here, not only when GitHub runs them: actionlint validates both files (syntax, expressions, action
inputs and runtimes, and the ``run:`` scripts through shellcheck when it is on PATH), every ``make`` target they call
must exist in the Makefile, and the Pages and test workflows keep the triggers, permissions and jobs they need.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unlearnlib.config import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
TESTS = WORKFLOWS / "tests.yml"
BOOK = WORKFLOWS / "book.yml"

#: shell operators that end a ``make`` command line
_SHELL_OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;"}
#: words after which a command starts
_COMMAND_PREFIXES = _SHELL_OPERATORS | {"sudo", "time", "then", "else", "do", "!"}
#: make options that take the next word as their argument
_MAKE_OPTIONS_WITH_ARGUMENT = {"-C", "-f", "-I", "-o", "-W", "--directory", "--file", "--makefile"}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _triggers(workflow: dict) -> dict:
    """The ``on:`` mapping (YAML 1.1 reads the bare key ``on`` as the boolean True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {event: None for event in on}
    return on or {}


def _steps(workflow: dict):
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def _run_scripts(workflow: dict) -> list[str]:
    return [step["run"] for _, step in _steps(workflow) if "run" in step]


def _make_targets(script: str) -> list[str]:
    """The targets of every ``make`` command in a shell script: words after ``make`` up to the end of the command,
    without options (and their arguments) or ``VAR=value`` assignments. Comments are ignored."""
    targets = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
        for i, word in enumerate(words):
            previous = words[i - 1] if i else ";"
            command_starts = previous in _COMMAND_PREFIXES or re.fullmatch(r"\w+=\S*", previous)
            if word != "make" or not command_starts:  # `echo make x` is no make command
                continue
            skip = False
            for arg in words[i + 1:]:
                if arg in _SHELL_OPERATORS:
                    break
                if skip:
                    skip = False
                elif arg in _MAKE_OPTIONS_WITH_ARGUMENT:
                    skip = True
                elif not arg.startswith("-") and "=" not in arg and not arg.isdigit():  # -j 2
                    targets.append(arg)
    return targets


def _makefile_targets() -> set[str]:
    """Explicit targets of the Makefile: lines ``name:`` (not ``NAME :=`` assignments)."""
    text = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.MULTILINE))


def _actionlint() -> str | None:
    """The actionlint executable: the one installed beside this interpreter (the venv's ``bin``, where
    ``pip install -e '.[test]'`` puts it), else the first on PATH."""
    return shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")


def test_both_workflows_pass_actionlint():
    """actionlint finds no error in either workflow: YAML and schema, ``${{ }}`` expressions, inputs and outputs of
    the actions used, deprecated action runtimes, and (with shellcheck on PATH) the ``run:`` scripts."""
    assert TESTS.is_file() and BOOK.is_file(), f"missing workflow files in {WORKFLOWS}"
    exe = _actionlint()
    if exe is None:
        pytest.fail("actionlint is not installed; it is part of the test extra: pip install -e '.[test]'")
    files = sorted(str(p.relative_to(REPO_ROOT)) for p in WORKFLOWS.glob("*.y*ml"))
    result = subprocess.run([exe, "-no-color", *files], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"actionlint found problems:\n{result.stdout}{result.stderr}"


def test_make_target_parser_reads_targets_and_skips_options_and_comments():
    """The parser used below finds the targets of real command lines, so that the Makefile check is not vacuous."""
    script = ("make test\nUNLEARNLIB_X=1 make -j 2 -C . book PROFILE=cpu && echo make nothing  # make comment\n"
              "if true; then make student; fi\nmake \\\n  bench\n")
    assert _make_targets(script) == ["test", "book", "student", "bench"]
    assert {"book", "test", "test-paper", "reproduce", "bench", "student", "clean"} <= _makefile_targets()
    assert "SHELL" not in _makefile_targets() and "VENV" not in _makefile_targets()


@pytest.mark.parametrize("path", [TESTS, BOOK], ids=lambda p: p.name)
def test_every_make_target_a_workflow_runs_is_in_the_makefile(path):
    """A renamed or removed Makefile target breaks the workflow that calls it; this catches it before GitHub does."""
    targets = [t for script in _run_scripts(_load(path)) for t in _make_targets(script)]
    assert targets, f"{path.name} runs no make target"
    missing = sorted(set(targets) - _makefile_targets())
    assert not missing, f"{path.name} runs make targets that the Makefile does not define: {missing}"


def test_tests_workflow_runs_make_test_on_every_push_and_pull_request_with_the_browser_check_required():
    """tests.yml: triggered by push and pull_request (no branch filter), read-only token, runs ``make test`` with
    ``UNLEARNLIB_REQUIRE_BROWSER=1`` after making sure Chromium and chromedriver are there, caches .venv and the
    datasets, has a time limit, and cancels superseded runs of the same ref."""
    workflow = _load(TESTS)
    on = _triggers(workflow)
    assert "push" in on and "pull_request" in on, f"tests.yml triggers: {sorted(on)}"
    for event in ("push", "pull_request"):
        assert not (on[event] or {}).get("branches"), f"tests.yml runs on {event} to some branches only"
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["cancel-in-progress"] is True, "superseded runs are not cancelled"
    assert "github.ref" in workflow["concurrency"]["group"]

    jobs = [(j, job) for j, job in workflow["jobs"].items()
            if any("test" in _make_targets(s.get("run", "")) for s in job.get("steps", []))]
    assert len(jobs) == 1, f"tests.yml should have one job that runs make test, not {len(jobs)}"
    job_id, job = jobs[0]
    assert 0 < job.get("timeout-minutes", 0) <= 360, f"job {job_id} has no sensible timeout-minutes"
    steps = job["steps"]
    make_test = next(i for i, s in enumerate(steps) if "test" in _make_targets(s.get("run", "")))
    env = {**workflow.get("env", {}), **job.get("env", {}), **steps[make_test].get("env", {})}
    assert str(env.get("UNLEARNLIB_REQUIRE_BROWSER")) == "1", "make test runs without UNLEARNLIB_REQUIRE_BROWSER=1"
    before = " ".join(s.get("run", "") for s in steps[:make_test])
    assert "apt-get install" in before and "chromium-driver" in before, "Chromium is not installed before make test"
    assert "download.pytorch.org/whl/cpu" in before, "torch's CPU wheels are not installed before make test"

    cached = [s["with"]["path"] for s in steps[:make_test] if s.get("uses", "").startswith("actions/cache@")]
    assert any(p.strip() == ".venv" for p in cached), f"no cache of .venv before make test: {cached}"
    assert any("data/" in p for p in cached), f"no cache of the datasets before make test: {cached}"


def test_book_workflow_builds_with_make_book_and_deploys_to_github_pages():
    """book.yml: a push to main (or a manual run) builds ``_build/html`` with ``make book``, uploads it as the Pages
    artifact, and a second job deploys it to the ``github-pages`` environment, whose url is the deployment's
    page_url; the token may write Pages and mint an OIDC id token, and one deployment never cancels another."""
    workflow = _load(BOOK)
    on = _triggers(workflow)
    assert set(on) == {"push", "workflow_dispatch"}, f"book.yml triggers: {sorted(on)}"
    assert on["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    assert workflow["concurrency"] == {"group": "pages", "cancel-in-progress": False}

    def uses(step, action):
        return step.get("uses", "").split("@")[0] == action

    builds = [j for j, job in workflow["jobs"].items() if any(uses(s, "actions/upload-pages-artifact")
                                                               for s in job.get("steps", []))]
    assert len(builds) == 1, "book.yml needs exactly one job that uploads the Pages artifact"
    build = workflow["jobs"][builds[0]]
    steps = build["steps"]
    names = [s.get("uses", "").split("@")[0] or s.get("run", "") for s in steps]
    configure = next((i for i, s in enumerate(steps) if uses(s, "actions/configure-pages")), None)
    make_book = next((i for i, s in enumerate(steps) if "book" in _make_targets(s.get("run", ""))), None)
    upload = next(i for i, s in enumerate(steps) if uses(s, "actions/upload-pages-artifact"))
    assert configure is not None and make_book is not None, f"the build job lacks configure-pages or make book: {names}"
    assert configure < upload and make_book < upload, f"build steps out of order: {names}"
    assert steps[upload]["with"]["path"].rstrip("/") == "_build/html"

    deploys = [(j, job) for j, job in workflow["jobs"].items() if any(uses(s, "actions/deploy-pages")
                                                                       for s in job.get("steps", []))]
    assert len(deploys) == 1, "book.yml needs exactly one job that deploys to Pages"
    deploy_id, deploy = deploys[0]
    assert deploy_id != builds[0], "the deployment must be a job of its own"
    needs = deploy.get("needs", [])
    assert builds[0] in ([needs] if isinstance(needs, str) else needs), "the deploy job does not wait for the build"
    step = next(s for s in deploy["steps"] if uses(s, "actions/deploy-pages"))
    assert deploy["environment"]["name"] == "github-pages"
    assert re.fullmatch(r"\$\{\{\s*steps\." + re.escape(step.get("id", "?")) + r"\.outputs\.page_url\s*\}\}",
                        deploy["environment"]["url"]), "the environment url is not the deploy step's page_url"


@pytest.mark.parametrize("path", [TESTS, BOOK], ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_major_version(path):
    """Actions are referenced as ``owner/name@vN``: a moving branch such as ``@main`` could change under the book."""
    actions = [step["uses"] for _, step in _steps(_load(path)) if "uses" in step]
    assert actions, f"{path.name} uses no action"
    loose = [a for a in actions if not re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", a)]
    assert not loose, f"{path.name}: actions not pinned to a major version: {loose}"


def test_tests_workflow_runs_every_chapter_on_the_paper_path_in_parallel():
    """`make test` runs every chapter's paper path (paper-smoke) with the paper models at width 8; the tests
    workflow's ``paper-smoke`` job runs it at full width on every chapter of ``_toc.yml``, one per runner, with
    ``make test-paper CHAPTER=``."""
    from unlearnlib.book import toc_chapters

    job = _load(TESTS)["jobs"]["paper-smoke"]
    listed = job["strategy"]["matrix"]["chapter"]
    assert sorted(listed) == sorted(p.stem for p in toc_chapters() if p.suffix == ".ipynb")
    assert job["strategy"].get("fail-fast") is False, "one chapter's failure must not hide another's"
    step = next(step for step in job["steps"] if "make test-paper" in step.get("run", ""))
    assert 'CHAPTER="$CHAPTER"' in step["run"] and step["env"]["CHAPTER"] == "${{ matrix.chapter }}"
    assert "CHAPTER" in (REPO_ROOT / "Makefile").read_text().split("test-paper:")[1].split("\n\n")[0]
