"""The automatic part of the exercises: one check per exercise, called from the student's notebook.

A student stores the answer to an exercise in a named variable and calls ``check("ex-ssd-ceiling", answer, ...)``
with the objects the answer was computed from. The check tests *properties* of the answer that follow from the
student's own run (the ceiling equals the library's formula for the task's sizes, the forget accuracy fell while
the test accuracy stayed within a margin, only the masked parameters moved), never a number typed into the book:
a different seed, profile or machine gives a different answer that passes all the same.

A wrong answer raises :class:`CheckFailed`, an ``AssertionError`` (what nbgrader's autograder counts as a failed test)
whose message says what is wrong and where to look, without the solution. A right one prints a line that starts
with a check mark, and the check returns that line.
"""
from __future__ import annotations

import importlib
import math
import pkgutil
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

#: exercise label -> the function that checks an answer to it
_CHECKS: dict[str, Callable[..., str]] = {}
#: the modules of this package that hold no checks
_NOT_CHECKS = {"checks", "release", "__main__"}


class CheckFailed(AssertionError):
    """An answer that does not have the property the exercise asks for. The message says what and where to look."""


def register(label: str) -> Callable[[Callable[..., str]], Callable[..., str]]:
    """Register the decorated function as the check of exercise ``label``. It receives the answer and the
    context the student passes, raises :class:`CheckFailed` on a wrong answer and returns a short message when the
    answer is right."""
    def decorate(fn: Callable[..., str]) -> Callable[..., str]:
        if label in _CHECKS and _CHECKS[label] is not fn:
            raise ValueError(f"two checks registered for exercise {label!r}")
        _CHECKS[label] = fn
        return fn
    return decorate


def _load_all() -> None:
    """Import every chapter's module of checks (one per chapter, named like the chapter)."""
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):  # this package's folder, without importing it
        if info.name not in _NOT_CHECKS:
            importlib.import_module(f"{__package__}.{info.name}")


def registered_checks() -> dict[str, Callable[..., str]]:
    """Every exercise label with a check, after importing all chapters' checks."""
    _load_all()
    return dict(_CHECKS)


def check(label: str, answer: Any, **context: Any) -> str:
    """Check the answer to exercise ``label``; see the module docstring. Returns the success message (also
    printed); raises :class:`CheckFailed` with what is wrong, or a ``KeyError`` for a label that has no check."""
    checks = registered_checks()
    if label not in checks:
        raise KeyError(f"no check for an exercise labelled {label!r}; the labels with checks are: "
                       + ", ".join(sorted(checks)))
    try:
        message = checks[label](answer, **context)
    except CheckFailed as failure:
        raise CheckFailed(f"{label}: {failure}") from None
    line = f"\u2713 {label}: {message}"
    print(line)
    return line


# -- small helpers the chapters' checks share ------------------------------------------------------------------

def expect(condition: bool, message: str) -> None:
    """Raise :class:`CheckFailed` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


def expect_mapping(answer: Any, keys: Iterable, what: str) -> Mapping:
    """``answer`` must be a mapping (a pandas Series counts) with exactly ``keys``; returns it as a mapping.
    ``what`` names the answer in messages."""
    keys = list(keys)
    if not isinstance(answer, Mapping) and hasattr(answer, "to_dict"):  # a pandas Series
        answer = answer.to_dict()
    expect(isinstance(answer, Mapping),
           f"{what} should be a dict (or a pandas Series) keyed by {keys!r}, not a {type(answer).__name__}")
    missing, extra = [k for k in keys if k not in answer], [k for k in answer if k not in keys]
    expect(not missing, f"{what} has no entry for {missing!r}")
    expect(not extra, f"{what} has entries the exercise does not ask for: {extra!r}")
    return answer


def expect_number(value: Any, what: str) -> float:
    """``value`` must be a finite real number; returns it as a float."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should be a number, not {type(value).__name__} {value!r}") from None
    expect(math.isfinite(number), f"{what} is {number}: a diverged run has no score; look at the run that made it")
    return number


def expect_close(value: Any, target: float, what: str, *, tol: float = 1e-6, hint: str = "") -> float:
    """``value`` must be a number within ``tol`` (absolute, plus the same relative) of ``target``."""
    number = expect_number(value, what)
    expect(abs(number - target) <= tol * (1 + abs(target)),
           f"{what} is {number:.6g}, which does not follow from your run{': ' + hint if hint else ''}")
    return number


def expect_fraction(value: Any, what: str) -> float:
    """``value`` must be a number in [0, 1] (an accuracy as a fraction, not a percentage)."""
    number = expect_number(value, what)
    expect(0.0 <= number <= 1.0, f"{what} is {number:.4g}; give accuracies as fractions in [0, 1], not percentages")
    return number


def expect_close_or_nan(value: Any, target: float, what: str, *, why_nan: str, hint: str = "",
                        tol: float = 1e-6) -> None:
    """``value`` within ``tol`` of ``target`` (:func:`expect_close`), and NaN exactly where ``target`` is NaN
    (``why_nan`` says why there is nothing to compute there)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should be a number, not {type(value).__name__} {value!r}") from None
    if math.isnan(target):
        expect(math.isnan(number), f"{what} is {number:.6g}, but {why_nan}{': ' + hint if hint else ''}")
        return
    expect_close(number, target, what, hint=hint, tol=tol)
