"""The shared experiment loop: references from the cache, one record per run (tuning: tests/test_protocol.py)."""
import numpy as np
import pytest

from unlearnlib.experiment import ProtocolWarning, best_settings, run_methods, tune_on_reported_task
from unlearnlib.metrics import is_collapsed
from unlearnlib.profiles import Profile

from conftest import TINY_RECIPE


def _profile(small_fashion):
    return Profile(name="test", dataset="fashion-mnist", arch="small-cnn", recipe=TINY_RECIPE, seeds=(0,),
                   train_size=3000, test_size=1000, svc_max_samples=300)


def test_run_methods_records_every_method_with_the_retrain_time(trained, class_task, small_fashion):
    records = run_methods(class_task, _profile(small_fashion), {"original": {}, "retrain": {},
                                                                "random_labels": {"epochs": 1}},
                          seeds=[0], device="cpu", progress=False)
    by_method = {r["method"]: r for r in records}
    assert list(by_method) == ["original", "retrain", "random_labels"]
    assert by_method["retrain"]["time_source"] == "cache" and by_method["retrain"]["seconds"] > 0
    assert by_method["original"]["seconds"] == 0
    assert by_method["retrain"]["activation_distance"] == 0
    assert by_method["random_labels"]["forget_acc"] < 0.1 < by_method["original"]["forget_acc"]
    assert by_method["random_labels"]["dataset_variant"] == "torchvision"


def test_the_pre_protocol_tuning_warns_that_it_selects_on_the_test_split(trained, class_task, small_fashion):
    """Kept only for the chapters executed before the protocol; it must say what it does."""
    grids = {"gradient_ascent": [{"lr": 1e-7}, {"lr": 0.02, "epochs": 3}],
             "random_labels": [{"epochs": 1}]}
    with pytest.warns(ProtocolWarning, match="test split"):
        records = tune_on_reported_task(class_task, _profile(small_fashion), grids, seed=0, device="cpu",
                                        progress=False)
    assert len(records) == 3
    useless = next(r for r in records if '"lr": 1e-07' in r["hparams"])
    assert useless["retrain_gap"] > 0.5  # a step this small forgets nothing
    # three epochs of ascent at 0.02 leave a model that predicts one class: its forget accuracy of 0 is not
    # forgetting, so the record is unscored (collapsed) and the setting is never chosen, however close to 0 it looks
    wrecked = next(r for r in records if '"lr": 0.02' in r["hparams"])
    assert is_collapsed(wrecked) and np.isnan(wrecked["retrain_gap"]) and "collapsed" in wrecked["diverged_reason"]
    assert records[2]["retrain_gap"] >= 0 and not is_collapsed(records[2])
    chosen = best_settings(records)
    assert chosen["gradient_ascent"] == {"lr": 1e-7} and chosen["random_labels"] == {"epochs": 1}


def test_settings_run_one_method_under_two_labels_with_per_seed_hyperparameters(trained, class_task, small_fashion):
    from unlearnlib.experiment import Setting

    seen = []

    def per_seed(refs):  # work done before the timed call, from the seed's models
        seen.append(refs.original.key)
        return {"lr": 0.05}

    methods = {"rl": Setting("random_labels", {"epochs": 1}),
               "rl (faster lr)": Setting("random_labels", {"epochs": 1}, per_seed=per_seed)}
    records = run_methods(class_task, _profile(small_fashion), methods, seeds=[0], device="cpu", progress=False)
    assert [r["method"] for r in records] == ["rl", "rl (faster lr)"]
    assert all(r["algorithm"] == "random_labels" for r in records)
    assert '"lr": 0.05' in records[1]["hparams"] and "lr" not in records[0]["hparams"]
    assert len(seen) == 1


def test_profiles_choose_the_recipe_per_dataset():
    from unlearnlib import get_profile

    paper = get_profile("paper")
    assert paper.recipe_for("cifar10") is paper.recipe
    assert paper.recipe_for("cifar100").epochs == 200 and paper.recipe_for("cifar20").milestones == (15, 30, 35)
    assert get_profile("cpu").recipe_for("fashion-mnist-super") == get_profile("cpu").recipe


def test_a_precomputed_object_is_named_in_the_record_not_dumped():
    """A per-seed object (SSD's precomputed importance) is not a hyperparameter value: the record names it, and its
    hparams stay those of the setting, so that the comparison recognises a rerun of the same setting."""
    import json

    from unlearnlib.experiment import Setting, _per_seed_objects, _recorded_hparams

    class Importance:
        pass

    setting = Setting("ssd", {"alpha": 2.0, "lam": 1.0})
    hp = {"alpha": 2.0, "lam": 1.0, "importance_d": Importance(), "batch_size": 64}
    assert json.loads(_recorded_hparams(hp, setting)) == {"alpha": 2.0, "lam": 1.0, "batch_size": 64}
    assert _per_seed_objects(hp, setting) == "importance_d"
    assert _per_seed_objects(dict(setting.hparams), setting) is None
