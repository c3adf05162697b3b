"""The project's configuration stays consistent with itself: one source of truth for each fact."""
import re
import tomllib

import yaml

from unlearnlib import REPO_URL
from unlearnlib.config import REPO_ROOT


def _pyproject():
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_environment_yml_installs_the_project_with_the_same_extras():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    extras = set(_pyproject()["project"]["optional-dependencies"])
    line = next(p for p in pip if p.startswith("-e ."))
    assert set(re.search(r"\[(.*)\]", line).group(1).split(",")) == extras == {"book", "test"}
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    minimum = _pyproject()["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.split("=")[1].split("."))) >= tuple(map(int, minimum.split(".")))


def test_jupyter_book_is_pinned_to_version_1():
    extras = _pyproject()["project"]["optional-dependencies"]
    for name in ("book", "test"):
        assert "jupyter-book>=1.0.4.post1,<2" in extras[name]


def test_repository_url_is_the_same_everywhere():
    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == REPO_URL
    assert _pyproject()["project"]["urls"]["Homepage"] == REPO_URL
    assert REPO_URL in (REPO_ROOT / "README.md").read_text()


def test_book_renders_committed_outputs_and_ci_calls_make_test():
    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme and "make reproduce" in readme


def test_core_never_imports_a_method():
    for path in (REPO_ROOT / "unlearnlib").glob("*.py"):
        # the experiment loop is the one place that calls the registry; provenance only reads it, to find the
        # module whose code a method runs (its fingerprint), and never runs a method
        if path.name in ("experiment.py", "provenance.py"):
            continue
        assert "from .methods" not in path.read_text(), path.name


def test_plotting_depends_only_on_the_core():
    """plotting is a low-level helper: it may use the core (metrics, stats), never the layers built on top of it
    (the experiment loop, the comparison, the methods), which would make it import half the library."""
    source = (REPO_ROOT / "unlearnlib" / "plotting.py").read_text()
    imports = set(re.findall(r"from \.(\w+)", source)) | set(re.findall(r"from unlearnlib\.(\w+)", source))
    assert imports, "plotting imports nothing from the library: the check reads the wrong file"
    assert not imports & {"comparison", "experiment", "methods", "book", "bench"}, imports


def test_book_cli_lists_the_toc_chapters(capsys):
    from unlearnlib.book import main

    assert main(["list"]) == 0
    assert "chapters/foundations.ipynb" in capsys.readouterr().out
    assert main(["reproduce", "--profile", "cpu", "--chapter", "no-such-chapter"]) == 2


def _library_imports() -> dict[str, set[str]]:
    """Which library modules each library module imports, at the top or inside a function (a lazy import still ties
    the two together), by name relative to the package (``"methods.rem"``; the package itself is ``""``)."""
    import ast

    root = REPO_ROOT / "unlearnlib"
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" and name else name.split(".")[:-1] if name else []
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                stem = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "unlearnlib":
                stem = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                target = ".".join([*stem, alias.name])
                found.add(target if target in modules else ".".join(stem))
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle reachable by a depth-first walk (each reported once, from where it was entered)."""
    found, done = [], set()

    def walk(node, path):
        for nxt in sorted(graph[node]):
            if nxt in path:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                walk(nxt, path + [nxt])
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            walk(start, [start])
    return found


def test_the_library_has_no_import_circle():
    """Layers point down only (design: book/bench over experiment over methods over the core): no module imports
    one that imports it back, not even lazily inside a function. The method package imports its modules to register
    them; they import the registry's machinery from methods.registry, never from the package."""
    graph = _library_imports()
    assert graph["bench"] and graph["book"] and graph["methods"], "the import graph was not read"
    assert _cycles(graph) == []
    # the check itself finds a circle: book -> bench -> book (bench once imported the chapter list from book)
    assert _cycles({**graph, "bench": graph["bench"] | {"book"}})
