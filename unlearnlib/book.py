"""Running the book's chapters: list them from ``_toc.yml`` and execute them through papermill on a profile.

    python -m unlearnlib.book reproduce --profile cpu [--chapter foundations]   # what `make reproduce` calls
    python -m unlearnlib.book list

Reproducing writes the executed notebook back in place (outputs and the injected parameters cell), and the chapter
itself writes ``results/<chapter>/<profile>.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .config import REPO_ROOT


def show_source(obj) -> "IPython.display.Markdown":
    """The source code of a library function or class as a Markdown code block: chapters show the code that ran,
    never a copy of it."""
    import inspect

    from IPython.display import Markdown

    source = inspect.getsource(inspect.unwrap(obj))
    module = inspect.getmodule(inspect.unwrap(obj)).__name__
    return Markdown(f"`{module}.{obj.__name__}`\n\n```python\n{source}```")


def toc_chapters(root: Path = REPO_ROOT) -> list[Path]:
    """The notebooks listed in ``_toc.yml``, in book order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").exists()]


def execute_chapter(path: Path, output: Path, *, profile: str, device: str = "auto", timeout: int | None = None,
                    extra: dict | None = None) -> Path:
    """Execute one chapter with papermill, injecting ``PROFILE`` and ``DEVICE`` (and ``extra``) parameters."""
    import papermill as pm

    params = {"PROFILE": profile, "DEVICE": device, **(extra or {})}
    pm.execute_notebook(str(path), str(output), parameters=params, cwd=str(path.parent), kernel_name="python3",
                        progress_bar=False, execution_timeout=timeout, request_save_on_cell_execute=False)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unlearnlib.book")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the chapters in _toc.yml")
    rep = sub.add_parser("reproduce", help="re-execute chapters in place on a profile")
    rep.add_argument("--profile", required=True, choices=["cpu", "paper", "smoke"])
    rep.add_argument("--chapter", help="chapter name, e.g. foundations (default: all)")
    rep.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    chapters = toc_chapters()
    if args.command == "list":
        print("\n".join(str(c.relative_to(REPO_ROOT)) for c in chapters))
        return 0
    if args.chapter:
        chapters = [c for c in chapters if c.stem == args.chapter]
        if not chapters:
            print(f"no chapter named {args.chapter!r} in _toc.yml", file=sys.stderr)
            return 2
    if args.profile == "smoke":
        print("warning: smoke outputs must not be committed; the book shows cpu or paper runs", file=sys.stderr)
    for chapter in chapters:
        start = time.perf_counter()
        print(f"executing {chapter.relative_to(REPO_ROOT)} on profile {args.profile} ...", flush=True)
        # execute into a temporary file and replace the chapter only when the run succeeded: a failed or
        # interrupted run never leaves a half-executed chapter behind
        partial = chapter.with_name(f".{chapter.stem}.running.ipynb")
        try:
            execute_chapter(chapter, partial, profile=args.profile, device=args.device)
            os.replace(partial, chapter)
        finally:
            partial.unlink(missing_ok=True)
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
