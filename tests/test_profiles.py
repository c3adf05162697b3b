"""Profiles: the quick ones are code checks of the full-size ones they stand for."""
from dataclasses import asdict

from unlearnlib.experiment import corruption_benchmark
from unlearnlib.profiles import PROFILES, get_profile


def test_paper_smoke_checks_the_paper_path_at_a_tiny_size():
    paper, check = get_profile("paper"), get_profile("paper-smoke")
    assert check.quick and get_profile("smoke").quick and not paper.quick and not get_profile("cpu").quick
    assert (check.dataset, check.arch) == (paper.dataset, paper.arch)
    same = {k: v for k, v in asdict(paper.recipe).items() if k not in ("epochs", "milestones")}
    assert same == {k: v for k, v in asdict(check.recipe).items() if k not in ("epochs", "milestones")}
    assert check.recipe.augment and check.recipe.rotation == paper.recipe.rotation == 15.0
    assert set(check.dataset_recipes) == set(paper.dataset_recipes)  # CIFAR-100 and CIFAR-20 have their own too
    assert check.recipe.epochs == 1 and len(check.seeds) == 1 and check.train_size <= 500


def test_paper_smoke_runs_rem_on_the_paper_benchmark_model_and_data():
    paper, check = corruption_benchmark(get_profile("paper")), corruption_benchmark(get_profile("paper-smoke"))
    assert (check["dataset"], check["arch"], check["swap"]) == (paper["dataset"], paper["arch"], paper["swap"])
    assert check["recipe"].schedule == paper["recipe"].schedule and check["recipe"].augment
    assert check["train_size"] == get_profile("paper-smoke").train_size and check["n_corrupt"] < paper["n_corrupt"]


def test_every_profile_has_a_corrupted_data_benchmark():
    for name in PROFILES:
        assert corruption_benchmark(get_profile(name))["arch"].endswith("capacity")


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
