"""Fingerprints of the library's code: a hash of a module's code, blind to docstrings, comments and formatting.

The lowest layer of provenance: it reads the library's source files and imports nothing from the library, so the
training code can key its checkpoint cache by :func:`training_fingerprint` without importing the method registry.
:mod:`unlearnlib.provenance` builds the keys of every store on top of it.

The code is hashed as Python syntax with docstrings, comments and formatting removed (``ast.unparse`` of the parsed
module): rewording a docstring keeps every stored result, changing a line of code does not.
"""
from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path
from typing import Iterable

#: where the library's modules are read from (a test may point it at a copy)
PACKAGE_ROOT = Path(__file__).resolve().parent

#: the modules that train a model: part of every checkpoint's key (a change there retrains)
TRAINING_MODULES = ("training", "models", "data")


def module_path(module: str) -> Path:
    """The file of library module ``module`` (``"training"``, ``"methods"``, ``"methods.rem"``)."""
    parts = module.split(".")
    package = PACKAGE_ROOT.joinpath(*parts)
    return package / "__init__.py" if package.is_dir() else PACKAGE_ROOT.joinpath(*parts[:-1], parts[-1] + ".py")


def module_source(module: str) -> str:
    """The source of library module ``module`` as it is on disk now."""
    return module_path(module).read_text()


@functools.lru_cache(maxsize=256)
def _code_digest(text: str) -> str:
    """A hash of the code in ``text``, blind to docstrings, comments and formatting."""
    try:
        tree = ast.parse(text)
    except SyntaxError:  # not Python we can parse: hash it as it is
        return hashlib.sha256(text.encode()).hexdigest()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()


def modules_fingerprint(modules: Iterable[str]) -> str:
    """A 16-hex-digit hash of the code of ``modules`` (library module names, order and repeats do not matter)."""
    h = hashlib.sha256()
    for module in sorted(set(modules)):
        h.update(f"{module}\0{_code_digest(module_source(module))}\0".encode())
    return h.hexdigest()[:16]


def _imported_modules(module: str) -> set[str]:
    """The library modules that ``module`` imports with a relative import (anywhere in the file)."""
    parts = module.split(".")
    package = parts if module_path(module).name == "__init__.py" else parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(module_source(module))):
        if not isinstance(node, ast.ImportFrom) or node.level == 0 or node.level - 1 > len(package):
            continue
        stem = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
        candidates = [".".join(stem)] + [".".join(stem + [alias.name]) for alias in node.names]
        found.update(name for name in candidates if name and module_path(name).exists())
    return found


def training_fingerprint() -> str:
    """The fingerprint of the code that trains a model (:data:`TRAINING_MODULES`): part of every checkpoint key."""
    return modules_fingerprint(TRAINING_MODULES)
