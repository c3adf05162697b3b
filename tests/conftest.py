"""Shared fixtures. Tests run on real data from the data root (``make test`` expects ``data/`` seeded from
``../shared/data``, which ``.ci/run`` does); checkpoints and results go to temporary folders."""
from __future__ import annotations

import os

import numpy as np
import pytest

from unlearnlib import config
from unlearnlib.data import load_dataset
from unlearnlib.training import Recipe, train_or_load

TINY_RECIPE = Recipe(epochs=3, batch_size=64, lr=3e-3, optimizer="adam", weight_decay=0.0, schedule="onecycle")

#: set to 1 on a machine that has a GPU (and in any CI job meant to check the GPU path): a test marked ``cuda`` then
#: fails when torch sees no CUDA device, instead of being skipped, so the GPU path cannot pass by skipping
REQUIRE_GPU_ENV = "UNLEARNLIB_REQUIRE_GPU"


def pytest_configure(config):
    config.addinivalue_line("markers", f"cuda: needs a CUDA GPU; skipped without one, a failure when "
                                       f"{REQUIRE_GPU_ENV}=1")


def pytest_runtest_setup(item):
    """A ``cuda`` test on a machine where torch sees no CUDA device: skipped, or failed under ``REQUIRE_GPU_ENV``."""
    if item.get_closest_marker("cuda") is None:
        return
    import torch

    if torch.cuda.is_available():
        return
    if os.environ.get(REQUIRE_GPU_ENV) == "1":
        pytest.fail(f"needs a CUDA GPU, which {REQUIRE_GPU_ENV}=1 requires, but torch {torch.__version__} (CUDA "
                    f"build: {torch.version.cuda}) sees none", pytrace=False)
    pytest.skip(f"needs a CUDA GPU ({REQUIRE_GPU_ENV}=1 makes this a failure)")


@pytest.fixture(scope="session", autouse=True)
def isolated_outputs(tmp_path_factory):
    """Checkpoints and results written by tests never touch the repository's cache or results."""
    base = tmp_path_factory.mktemp("unlearnlib")
    old = {k: os.environ.get(k) for k in (config.CACHE_ENV, config.RESULTS_ENV, config.FORGET_SETS_ENV)}
    os.environ[config.CACHE_ENV] = str(base / "checkpoints")
    os.environ[config.RESULTS_ENV] = str(base / "results")
    os.environ[config.FORGET_SETS_ENV] = str(base / "forget_sets")
    yield base
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def fashion():
    """Full Fashion-MNIST (60,000 / 10,000) from the data root."""
    return load_dataset("fashion-mnist")


@pytest.fixture(scope="session")
def small_fashion():
    """A fixed class-balanced 3,000 / 1,000 subset of Fashion-MNIST: real data, seconds to train on."""
    return load_dataset("fashion-mnist", train_size=3000, test_size=1000, subset_seed=0)


@pytest.fixture(scope="session")
def class_task(small_fashion):
    from unlearnlib import tasks

    return tasks.full_class(small_fashion, "Trouser")


@pytest.fixture(scope="session")
def trained(small_fashion, class_task):
    """Original (D = D_f + D_r, the training split without the validation split) and retrain (D_r only) small CNNs
    for ``class_task``, seed 0."""
    all_idx = class_task.train_idx
    original = train_or_load(small_fashion, all_idx, "small-cnn", TINY_RECIPE, seed=0, role="original",
                             device="cpu", progress=False)
    retrain = train_or_load(small_fashion, class_task.retain_idx, "small-cnn", TINY_RECIPE, seed=0, role="retrain",
                            device="cpu", progress=False)
    return original.model, retrain.model


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """The book built once per test session from the committed chapters, with warnings as errors (as `make book`
    does); returns the folder of its HTML, MathJax included (_static/mathjax). A failed build fails every test that
    needs it, with the build's log."""
    import subprocess
    import sys
    from pathlib import Path

    from unlearnlib.config import REPO_ROOT

    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", str(REPO_ROOT), "-W", "-n", "--keep-going", "--path-output", str(out)],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail("the book does not build with -W:\n" + proc.stdout[-4000:] + proc.stderr[-4000:])
    return out / "_build" / "html"


@pytest.fixture(scope="session")
def smoke_chapter(isolated_outputs, tmp_path_factory):
    """``smoke_chapter(path)``: the chapter executed on the smoke profile (device cpu), once per test session, into
    the session's isolated results and checkpoints. The chapter tests and the coursework tests share the run: the
    coursework copies read the models and the results it leaves."""
    from unlearnlib.book import execute_chapter

    runs: dict = {}

    def run(chapter):
        if chapter not in runs:
            out = tmp_path_factory.mktemp(f"smoke-{chapter.stem}") / chapter.name
            runs[chapter] = execute_chapter(chapter, out, profile="smoke", device="cpu", timeout=600)
        return runs[chapter]
    return run
