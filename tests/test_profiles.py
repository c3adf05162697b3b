"""Profiles: the quick ones are code checks of the full-size ones they stand for."""
from dataclasses import asdict

import json

import pytest

from unlearnlib.config import REPO_ROOT
from unlearnlib.experiment import corruption_benchmark
from unlearnlib.models import split_arch
from unlearnlib.profiles import PAPER_SMOKE_ENV, PAPER_SMOKE_WIDTH, PROFILES, get_profile


@pytest.fixture(autouse=True)
def _small_paper_smoke(monkeypatch):
    """These tests describe paper-smoke as `make test` runs it (small width), whatever the environment says."""
    monkeypatch.delenv(PAPER_SMOKE_ENV, raising=False)


def test_paper_smoke_checks_the_paper_path_at_a_tiny_size():
    paper, check = get_profile("paper"), get_profile("paper-smoke")
    assert check.quick and get_profile("smoke").quick and not paper.quick and not get_profile("cpu").quick
    assert (check.dataset, split_arch(check.arch)[0]) == (paper.dataset, paper.arch)  # the same model, narrower
    same = {k: v for k, v in asdict(paper.recipe).items() if k not in ("epochs", "milestones")}
    assert same == {k: v for k, v in asdict(check.recipe).items() if k not in ("epochs", "milestones")}
    assert check.recipe.augment and check.recipe.rotation == paper.recipe.rotation == 15.0
    assert set(check.dataset_recipes) == set(paper.dataset_recipes)  # CIFAR-100 and CIFAR-20 have their own too
    assert check.recipe.epochs == 1 and len(check.seeds) == 1 and check.train_size <= 500


def test_paper_smoke_runs_rem_on_the_paper_benchmark_model_and_data():
    paper, check = corruption_benchmark(get_profile("paper")), corruption_benchmark(get_profile("paper-smoke"))
    assert (check["dataset"], check["swap"]) == (paper["dataset"], paper["swap"])
    assert (paper["arch"], check["arch"]) == ("resnet9-capacity", f"resnet9-capacity@{PAPER_SMOKE_WIDTH}")
    assert check["recipe"].schedule == paper["recipe"].schedule and check["recipe"].augment
    assert check["train_size"] == get_profile("paper-smoke").train_size and check["n_corrupt"] < paper["n_corrupt"]


def test_every_profile_has_a_corrupted_data_benchmark():
    for name in PROFILES:
        assert split_arch(corruption_benchmark(get_profile(name))["arch"])[0].endswith("capacity")


def test_a_profile_may_size_one_dataset_differently():
    """paper-smoke loads 50 CIFAR-10 test images but more of CIFAR-100, whose 100 classes need one test image each."""
    smoke = get_profile("smoke").replace(dataset_sizes={"fashion-mnist-super": (600, 200)})
    assert len(smoke.load_data().y_train) == 3000                      # the profile's own size
    assert len(smoke.load_data("fashion-mnist-super").y_train) == 600  # the dataset's
    check = get_profile("paper-smoke")
    assert check.dataset_sizes["cifar100"][1] >= 100 > check.test_size


def test_paper_smoke_runs_the_first_settings_of_every_grid_and_records_the_cap():
    """A code check needs the tuning code to run, not every setting: paper-smoke keeps the first ``grid_cap``
    settings of every grid (the same number for every method, so budgets stay equal) and the config says so.
    Reported profiles run them all."""
    from unlearnlib.experiment import _cap_note, _equal_budget

    grids = {"a": [{"lr": 1}, {"lr": 2}, {"lr": 3}], "b": [{"e": 1}, {"e": 2}, {"e": 3}]}
    check = get_profile("paper-smoke")
    n = check.grid_cap
    assert n is not None and 1 <= n < 3
    run, sizes = _equal_budget(grids, "tune", check)
    assert run == {"a": grids["a"][:n], "b": grids["b"][:n]} and sizes == {"a": n, "b": n}
    assert _cap_note(check) == {"grid_cap": n}
    for name in ("cpu", "paper", "smoke"):
        run, sizes = _equal_budget(grids, "tune", get_profile(name))
        assert run == grids and sizes == {"a": 3, "b": 3} and _cap_note(get_profile(name)) == {}
    assert "grid_cap" not in get_profile("cpu").as_dict(), "the cpu description (and keys hashed from it) unchanged"


def test_paper_smoke_builds_the_paper_architectures_at_a_small_width_and_says_so():
    """paper-smoke's models are the paper's at base width 8 (make test); its description records the width, since
    it is a different model; an architecture a chapter swaps in (REM's ResNet-9) gets the same width."""
    check = get_profile("paper-smoke")
    assert check.arch_width == PAPER_SMOKE_WIDTH < 64 and check.arch == f"resnet18-cifar@{PAPER_SMOKE_WIDTH}"
    assert check.as_dict()["arch_width"] == PAPER_SMOKE_WIDTH and check.as_dict()["arch"] == check.arch
    assert check.replace(arch="resnet9-capacity").arch == f"resnet9-capacity@{PAPER_SMOKE_WIDTH}"
    assert check.replace(arch="small-cnn").arch == "small-cnn"  # no width parameter: unchanged
    assert check.replace(arch_width=None).arch == get_profile("paper").arch


def test_make_test_paper_runs_paper_smoke_at_the_paper_width(monkeypatch):
    """UNLEARNLIB_PAPER_SMOKE=full (make test-paper, the GitHub paper-smoke job): the full-width paper models, and a
    description without a width, as the paper profile's."""
    monkeypatch.setenv(PAPER_SMOKE_ENV, "full")
    check, paper = get_profile("paper-smoke"), get_profile("paper")
    assert check.arch == paper.arch and check.arch_width is None and "arch_width" not in check.as_dict()
    assert corruption_benchmark(check)["arch"] == corruption_benchmark(paper)["arch"] == "resnet9-capacity"


def test_the_width_leaves_the_other_profiles_descriptions_unchanged():
    """cpu, smoke and paper have no width: their descriptions (and every key hashed from them) are as before; the
    cpu one is the one the committed foundations results recorded, on every field those results have."""
    for name in ("smoke", "cpu", "paper"):
        described = get_profile(name).as_dict()
        assert "arch_width" not in described and "@" not in described["arch"]
    assert get_profile("paper").arch == "resnet18-cifar"
    recorded = json.loads((REPO_ROOT / "results" / "foundations" / "cpu.json").read_text())["config"]["profile"]
    now = json.loads(json.dumps(get_profile("cpu").as_dict()))
    assert {k: now.get(k) for k in recorded} == recorded
