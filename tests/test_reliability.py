"""Failure paths across the library, in one place: bad input gets an error that says what is wrong and what to do,
an interrupted run resumes from what it saved, a damaged file is reported with its path (or rebuilt), and the
same seed gives the same numbers."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from unlearnlib import get_profile, load_dataset, tasks
from unlearnlib.data import DatasetNotAvailableError
from unlearnlib.experiment import corruption_benchmark, run_methods
from unlearnlib.methods import get_method, unlearn
from unlearnlib.models import build_model, check_compatible
from unlearnlib.results import load_results, save_results
from unlearnlib.training import cached_model, train_or_load

from conftest import TINY_RECIPE

# ---------------------------------------------------------------------------------------------------------------
# Bad input: every public entry point names the problem and the way out


def _bad_inputs(small_fashion, class_task, trained):
    """(what is wrong, call, exception, words the message must contain)."""
    original, _ = trained
    mnist_like = load_dataset("mnist", train_size=300, test_size=100)
    return [
        ("unknown profile", lambda: get_profile("gpu"), ValueError, "choose one of smoke, cpu, paper"),
        ("unknown method", lambda: get_method("forget"), ValueError, "available: "),
        ("unknown hyperparameter", lambda: unlearn("finetune", original, class_task, epoch=3), TypeError,
         "accepted: "),
        ("unknown dataset", lambda: load_dataset("imagenet"), ValueError, "available: "),
        ("unknown class", lambda: tasks.full_class(small_fashion, "Boot"), ValueError, "valid names: "),
        ("class index out of range", lambda: tasks.full_class(small_fashion, 12), ValueError, "valid indices"),
        ("every class forgotten", lambda: tasks.full_class(small_fashion, list(range(10))), ValueError,
         "nothing would remain"),
        ("empty forget set", lambda: tasks.instances(small_fashion, []), ValueError, "at least one"),
        ("index out of range", lambda: tasks.instances(small_fashion, [10**6]), ValueError, "must be in 0.."),
        ("too many random samples", lambda: tasks.random_samples(small_fashion, 10**6), ValueError,
         "the training set has"),
        ("unknown corruption", lambda: tasks.corrupted(small_fashion, "blur", n_corrupt=10), ValueError,
         "choose one of"),
        ("discovery rate out of range", lambda: tasks.corrupted(small_fashion, "trigger", n_corrupt=10,
                                                                discovery_rate=0.0), ValueError, "(0, 1]"),
        ("few-shot budget of zero", lambda: tasks.few_shot(class_task, 0), ValueError, "positive whole number"),
        ("requests larger than the forget set", lambda: tasks.split_instances(
            tasks.instances(small_fashion, [1, 2]), [3]), ValueError, "the forget set has 2"),
        ("unknown architecture", lambda: build_model("resnet1000", 10, 1, 28), ValueError, "available: "),
        ("model and task from different datasets", lambda: check_compatible(
            build_model("small-cnn", 10, 3, 32), mnist_like), ValueError, "does not match"),
        ("retrain asked for without a retrain model", lambda: run_methods(
            class_task, get_profile("smoke").replace(recipe=TINY_RECIPE), {"retrain": {}}, seeds=[0], retrain=False,
            progress=False), ValueError, "pass retrain=True"),
        ("no corrupted-data benchmark for a profile", lambda: corruption_benchmark(
            get_profile("cpu").replace(name="laptop")), ValueError, "use smoke, cpu, paper or paper-smoke"),
    ]


def test_every_bad_input_gets_an_error_that_says_what_to_do(small_fashion, class_task, trained):
    cases = _bad_inputs(small_fashion, class_task, trained)
    for what, call, exc, words in cases:
        with pytest.raises(exc) as err:
            call()
        assert words in str(err.value), f"{what}: {err.value!r} does not say {words!r}"


def test_a_dataset_missing_offline_says_where_to_put_it(tmp_path):
    with pytest.raises(DatasetNotAvailableError) as err:
        load_dataset("fashion-mnist", root=tmp_path, download=False)
    assert str(tmp_path) in str(err.value) and "Copy" in str(err.value)


def test_a_saved_forget_set_that_no_longer_matches_is_refused_with_its_path(small_fashion, tmp_path):
    path = tmp_path / "forget.npz"
    tasks.fixed(tasks.full_class(small_fashion, "Trouser"), path)
    with pytest.raises(ValueError, match=str(path)):
        tasks.fixed(tasks.full_class(small_fashion, "Bag"), path)


# ---------------------------------------------------------------------------------------------------------------
# Interrupted runs and damaged files


def test_an_interrupted_training_leaves_no_checkpoint_and_the_next_call_trains(small_fashion, tmp_path):
    spec = {"model": {"arch": "mlp", "num_classes": 10, "in_channels": 1, "image_size": 28, "pretrained": False}}

    def interrupted():
        raise KeyboardInterrupt("power cut while training")

    with pytest.raises(KeyboardInterrupt):
        cached_model(spec, interrupted, root=tmp_path)
    assert not list(tmp_path.iterdir()), "nothing half-written may stay behind"
    first = cached_model(spec, lambda: build_model("mlp", 10, 1, 28), root=tmp_path)
    second = cached_model(spec, lambda: pytest.fail("a cached model must not be rebuilt"), root=tmp_path)
    assert not first.cached and second.cached


def test_a_damaged_checkpoint_is_named_in_a_warning_and_rebuilt(small_fashion, tmp_path):
    idx = np.arange(len(small_fashion.y_train))
    trained = train_or_load(small_fashion, idx, "mlp", TINY_RECIPE, seed=0, role="original", device="cpu",
                            progress=False, root=tmp_path)
    (path,) = tmp_path.glob("*.pt")
    path.write_bytes(path.read_bytes()[:100])  # a truncated file, as after a full disk without atomic writes
    with pytest.warns(UserWarning, match=str(path)):
        again = train_or_load(small_fashion, idx, "mlp", TINY_RECIPE, seed=0, role="original", device="cpu",
                              progress=False, root=tmp_path)
    assert not again.cached
    for a, b in zip(trained.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b), "the rebuilt model must equal the original one (same seed)"


def test_a_damaged_results_file_is_reported_with_its_path(tmp_path):
    save_results("demo", "cpu", [{"task": "t", "method": "m", "seed": 0, "forget_acc": 0.5, "seconds": 1.0}],
                 root=tmp_path)
    path = tmp_path / "demo" / "cpu.json"
    path.write_text(path.read_text()[:50])
    with pytest.raises(ValueError, match=str(path)):
        load_results("demo", root=tmp_path)
    path.write_text(json.dumps({"chapter": "demo"}))  # valid JSON, but not a results file
    with pytest.raises(ValueError, match="damaged"):
        load_results("demo", root=tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Same seed, same numbers


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


def test_training_is_reproducible_for_a_seed_and_differs_across_seeds(small_fashion, tmp_path):
    idx = np.arange(len(small_fashion.y_train))
    runs = [train_or_load(small_fashion, idx, "small-cnn", TINY_RECIPE, seed=s, role="original", device="cpu",
                          progress=False, root=tmp_path / f"run{i}").model for i, s in enumerate((0, 0, 1))]
    assert torch.equal(_weights(runs[0]), _weights(runs[1]))
    assert not torch.equal(_weights(runs[0]), _weights(runs[2]))


@pytest.mark.parametrize("method, hp", [("finetune", {"epochs": 1}), ("neggrad_plus", {}), ("ssd", {}),
                                        ("npo", {"epochs": 3}), ("scrub", {"epochs": 1, "max_epochs": 1})])
def test_unlearning_is_reproducible_for_a_seed(method, hp, class_task, trained):
    original, _ = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        a, b = (unlearn(method, original, class_task, seed=3, device="cpu", **hp).model for _ in range(2))
    assert torch.equal(_weights(a), _weights(b)), f"{method} gave different weights for the same seed"


class _NaNOutputs(torch.nn.Module):
    """A model whose weights are finite but whose outputs are NaN for every image (as after an overflow inside)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) * float("nan")


def _nan_weights(model):
    broken = __import__("copy").deepcopy(model)
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))
    return broken


@pytest.mark.parametrize("how", ["weights", "outputs"])
def test_a_diverged_model_is_a_diverged_record_never_a_score(how, class_task, trained):
    """NaN logits turned into numbers predict class 0 and score like a (bad) model; a diverged model must instead
    give NaN in every metric and diverged=True, in every evaluation path."""
    from unlearnlib.metrics import DIVERGENCE_FIELDS, evaluate, is_collapsed, is_diverged, quick_evaluate, \
        validation_evaluate

    original, retrain = trained
    broken = _nan_weights(original) if how == "weights" else _NaNOutputs(original)
    for rec in (evaluate(broken, class_task, reference=retrain, device="cpu"),
                quick_evaluate(broken, class_task, device="cpu", retain=True),
                validation_evaluate(broken, class_task, device="cpu")):
        assert is_diverged(rec) and not is_collapsed(rec) and rec["diverged_step"] is None
        metrics = {k: v for k, v in rec.items() if k not in DIVERGENCE_FIELDS}
        assert metrics and all(np.isnan(v) for v in metrics.values()), metrics
    fine = evaluate(original, class_task, reference=retrain, device="cpu")
    assert not is_diverged(fine) and set(fine) == set(evaluate(broken, class_task, reference=retrain, device="cpu"))


def test_a_method_that_reports_divergence_gives_a_diverged_record_with_its_step(class_task, trained, monkeypatch):
    """run_methods scores nothing for a run the method itself stopped at a non-finite loss, even if the weights it
    returned are still finite."""
    from unlearnlib import experiment, methods
    from unlearnlib.profiles import get_profile

    original, retrain = trained
    refs = experiment.References(experiment.TrainedModel(original, 1.0, {}, True, "o"),
                                 experiment.TrainedModel(retrain, 2.0, {}, True, "r"))
    monkeypatch.setattr(experiment, "reference_models", lambda *a, **k: refs)

    @methods.register("_diverges_at_7")
    def _diverges(model, task, *, seed=0, device="cpu"):
        return methods.report_divergence(model, 7, "non-finite loss")

    try:
        recs = experiment.run_methods(class_task, get_profile("smoke"), {"_diverges_at_7": {}, "original": {}},
                                      seeds=[0], device="cpu", progress=False)
        chain = experiment.run_continual([tasks.instances(class_task.data, class_task.forget_idx[i:i + 4])
                                          for i in (0, 4, 8)], get_profile("smoke"), {"_diverges_at_7": {}},
                                         seed=0, device="cpu", progress=False)
    finally:
        methods.REGISTRY.pop("_diverges_at_7")
    bad, good = recs
    assert bad["diverged"] is True and bad["diverged_step"] == 7
    assert np.isnan(bad["forget_acc"]) and np.isnan(bad["test_acc"]) and np.isnan(bad["mia_loss_lr"])
    assert good["diverged"] is False and np.isfinite(good["test_acc"])
    # before the first request the original is scored; from the request that diverged on, nothing is
    assert [r.get("diverged", False) for r in chain] == [False, True, True, True]
    assert all(np.isnan(r["test_acc"]) and np.isnan(r["request_acc"]) for r in chain[1:])


def test_no_scored_path_converts_non_finite_values():
    """nan_to_num hides divergence; the library must never use it."""
    from unlearnlib.config import REPO_ROOT

    users = [p.name for p in (REPO_ROOT / "unlearnlib").rglob("*.py") if "nan_to_num" in p.read_text()]
    assert not users, f"nan_to_num in {users}"


@pytest.mark.parametrize("corruption", ["trigger", "label_swap"])
def test_corruption_metrics_give_a_diverged_record_for_a_non_finite_model(corruption, small_fashion, trained):
    """REM's metrics follow the same rule: Healed and Utility of a model with NaN outputs are NaN, never the share
    of class-0 images."""
    from unlearnlib.metrics import corruption_metrics, healed_accuracy, is_diverged

    original, _ = trained
    task = tasks.corrupted(small_fashion, corruption, n_corrupt=30, discovery_rate=0.5, seed=0)
    rec = corruption_metrics(_NaNOutputs(original), task, device="cpu")
    assert is_diverged(rec) and np.isnan(rec["healed"]) and np.isnan(rec["utility_x_healed"])
    assert np.isnan(healed_accuracy(_nan_weights(original), task, device="cpu"))
    fine = corruption_metrics(original, task, device="cpu")
    assert not is_diverged(fine) and set(fine) == set(rec)
