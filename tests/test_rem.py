"""REM (Schoepf et al. 2025): the capacity model, the corrupted-data metrics, the method on real data, and the
discovery grid."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unlearnlib import tasks
from unlearnlib.experiment import run_discovery_grid
from unlearnlib.methods import unlearn
from unlearnlib.metrics import corruption_metrics
from unlearnlib.models import build_model, model_for
from unlearnlib.profiles import get_profile
from unlearnlib.training import Recipe, predict_logits, train_model, train_or_load

from conftest import TINY_RECIPE


@pytest.fixture(scope="module")
def trigger_task(small_fashion):
    return tasks.corrupted(small_fashion, "trigger", n_corrupt=150, discovery_rate=0.5, target_class=0, seed=0)


@pytest.fixture(scope="module")
def backdoored(trigger_task):
    """A Capacity-0.5 small CNN trained on the triggered data: it has learned the backdoor."""
    recipe = TINY_RECIPE.replace(epochs=4)
    return train_or_load(trigger_task.data, trigger_task.train_idx, "small-cnn-capacity", recipe,
                         seed=0, role="original", device="cpu", progress=False).model


@pytest.mark.parametrize("arch,shape", [("small-cnn-capacity", (1, 28)), ("resnet9-capacity", (3, 32))])
def test_discarding_the_extra_capacity_changes_no_original_weight_and_no_output(arch, shape):
    model = build_model(arch, 10, shape[0], shape[1], seed=0).eval()
    x = torch.randn(6, shape[0], shape[1], shape[1])
    extra = model.extra_capacity()
    params = dict(model.named_parameters())
    with torch.no_grad():  # make theta_o2 loud, so that a leak into the drop-mode output would show
        for name, where in extra.items():
            params[name][where] = torch.randn(int(where.sum())) * 10
    before = {n: p.detach().clone() for n, p in params.items()}
    out_before = model(x)
    model.discard_capacity()
    for name, p in model.named_parameters():
        where = extra.get(name, torch.zeros_like(p, dtype=torch.bool))
        assert torch.equal(p[~where], before[name][~where]), f"{name}: theta_o1 changed"
        assert (p[where] == 0).all(), f"{name}: theta_o2 not discarded"
    assert torch.equal(model(x), out_before)
    # half of every masked layer is extra capacity
    assert all(m.channels - m.keep == m.channels // 2 for m in model.masks)


def test_pretraining_in_drop_mode_leaves_the_extra_capacity_at_its_initialisation(small_fashion):
    model = model_for(small_fashion, "small-cnn-capacity", seed=0)
    extra = model.extra_capacity()
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_model(model, small_fashion, np.arange(500), Recipe(epochs=1, lr=3e-3, optimizer="adam", weight_decay=0.0),
                device="cpu", progress=False)
    for name, p in model.named_parameters():
        if name in extra:
            assert torch.equal(p[extra[name]], init[name][extra[name]]), name
    assert any(not torch.equal(p, init[n]) for n, p in model.named_parameters())


def test_masks_are_reproducible_from_the_seed_and_leave_the_global_rng_alone():
    a, b = (build_model("small-cnn-capacity", 10, 1, 28, seed=0) for _ in range(2))
    rng = torch.get_rng_state()
    a.draw_masks(100, p_mem=0.2, seed=7)
    assert torch.equal(torch.get_rng_state(), rng)
    b.draw_masks(100, p_mem=0.2, seed=7)
    for ma, mb in zip(a.masks, b.masks):
        assert torch.equal(ma.table, mb.table)
        assert ma.table.shape == (100, ma.channels - ma.keep)
        assert 0.1 < ma.table.float().mean() < 0.3  # Bernoulli(0.2) per channel
    b.draw_masks(100, p_mem=0.2, seed=8)
    assert not torch.equal(a.masks[1].table, b.masks[1].table)
    # a masked forward gates only the extra channels, example by example
    x = torch.randn(2, 1, 28, 28)
    a.eval()
    assert not torch.equal(a(x, torch.tensor([0, 1])), a(x))


def test_corruption_metrics_score_every_corrupted_sample_in_index_order(trigger_task, backdoored):
    m = corruption_metrics(backdoored, trigger_task, device="cpu")
    c = trigger_task.corruption
    one_by_one = [predict_logits(backdoored, trigger_task.data, [i], split="train", device="cpu").argmax(1).item()
                  for i in c["corrupt_idx"]]
    assert m["healed"] == pytest.approx(np.mean(np.array(one_by_one) == c["clean_labels"]))
    assert m["utility_x_healed"] == pytest.approx(m["utility"] * m["healed"])
    # the backdoor was learned: the original is not healed, and triggered test images go to the target class
    assert m["healed"] < 0.3 and m["healed_test"] < 0.5 and m["forget_acc"] > 0.8


def test_healed_splits_into_found_and_hidden_and_a_lookup_heals_only_the_found_part(small_fashion, trigger_task,
                                                                                      backdoored):
    """REM's claim is about the hidden corrupted samples. ``refuse_instances``, a lookup that masks the given label's
    logit on the exact found images, heals the found half as far as never predicting the target class does there
    (``suppress_target``) and leaves the hidden half exactly where the original has it. ``healed_accuracy`` scores
    every corrupted sample by default, as before, and each part on request; nothing is hidden at 100 % discovery,
    which is NaN and not a divergence."""
    from unlearnlib.metrics import corrupted_part, healed_accuracy, is_diverged

    found = corrupted_part(trigger_task, "found")
    assert found.sum() == len(trigger_task.forget_idx) and (~found).sum() == len(trigger_task.corruption["hidden_idx"])
    before = corruption_metrics(backdoored, trigger_task, device="cpu")
    assert healed_accuracy(backdoored, trigger_task, device="cpu") == before["healed"]  # default: all of D_c
    for part in ("found", "hidden"):
        assert healed_accuracy(backdoored, trigger_task, device="cpu", part=part) == \
            pytest.approx(before[f"healed_{part}"])
    assert before["healed"] == pytest.approx(  # the two parts, weighted by their sizes, are the whole
        (found.sum() * before["healed_found"] + (~found).sum() * before["healed_hidden"]) / len(found))

    lookup = corruption_metrics(unlearn("refuse_instances", backdoored, trigger_task, device="cpu").model,
                                trigger_task, device="cpu")
    blind = corruption_metrics(unlearn("suppress_target", backdoored, trigger_task, device="cpu").model,
                               trigger_task, device="cpu")
    assert lookup["healed_hidden"] == before["healed_hidden"]  # not shown to the lookup, so not touched
    assert lookup["healed_found"] == blind["healed_found"] > before["healed_found"] + 0.2  # the same masked logit
    assert blind["healed_hidden"] > before["healed_hidden"] + 0.2  # masking the class everywhere reaches them too
    assert lookup["target_acc"] == before["target_acc"] and lookup["healed_test"] == before["healed_test"]

    full = tasks.corrupted(small_fashion, "trigger", n_corrupt=150, discovery_rate=1.0, target_class=0, seed=0)
    m = corruption_metrics(backdoored, full, device="cpu")  # the same corrupted data: the same original
    assert not is_diverged(m) and np.isnan(m["healed_hidden"]) and m["healed_found"] == m["healed"]
    assert np.isnan(healed_accuracy(backdoored, full, device="cpu", part="hidden"))
    with pytest.raises(ValueError, match="part"):
        healed_accuracy(backdoored, full, device="cpu", part="known")


def test_label_swap_utility_excludes_the_swapped_classes(small_fashion, backdoored):
    swap = tasks.corrupted(small_fashion, "label_swap", n_corrupt=40, swap_classes=("T-shirt/top", "Shirt"), seed=0)
    m = corruption_metrics(backdoored, swap, device="cpu")
    pred = predict_logits(backdoored, swap.data, None, split="test", device="cpu").argmax(1)
    keep = ~np.isin(swap.data.y_test.numpy(), [0, 6])
    assert m["utility"] == pytest.approx((pred == swap.data.y_test).numpy()[keep].mean())
    assert m["healed_test"] == pytest.approx((pred == swap.data.y_test).numpy()[~keep].mean())


def test_discovery_rates_nest_inside_one_fixed_corrupted_set(small_fashion):
    low = tasks.corrupted(small_fashion, "random_label", n_corrupt=200, discovery_rate=0.1, seed=3)
    high = tasks.corrupted(small_fashion, "random_label", n_corrupt=200, discovery_rate=0.5, seed=3)
    assert np.array_equal(low.corruption["corrupt_idx"], high.corruption["corrupt_idx"])
    assert low.data.fingerprint() == high.data.fingerprint()  # one original model serves every rate
    assert set(low.forget_idx) < set(high.forget_idx) and len(low.forget_idx) == 20
    assert np.isin(low.corruption["hidden_idx"], low.retain_idx).all()  # the undiscovered rest hides in D_r
    assert (low.corruption["corrupt_labels"] != low.corruption["clean_labels"]).all()


def test_rem_heals_the_backdoor_and_keeps_utility(trigger_task, backdoored):
    before = corruption_metrics(backdoored, trigger_task, device="cpu")
    result = unlearn("rem", backdoored, trigger_task, seed=0, device="cpu", epochs=3, lr=0.02, batch_size=128,
                     progress=False)
    after = corruption_metrics(result.model, trigger_task, device="cpu")
    assert after["healed"] > before["healed"] + 0.4, (before, after)  # hidden half included
    assert after["utility"] > before["utility"] - 0.15
    assert after["forget_acc"] <= 0.2 + 1e-9
    assert result.info["best_round"] >= 1 and result.info["flush_passes"] >= 1
    assert all((result.model.state_dict()[n][w] == 0).all() for n, w in result.model.extra_capacity().items())
    # the input model is untouched (the registry hands REM a copy)
    assert corruption_metrics(backdoored, trigger_task, device="cpu")["healed"] == before["healed"]


def test_rem_refuses_a_model_without_extra_capacity(trigger_task, trained):
    original, _ = trained
    with pytest.raises(ValueError, match="extra capacity"):
        unlearn("rem", original, trigger_task, device="cpu")


def test_npo_removes_the_discovered_samples_and_stops_at_its_threshold(trigger_task, backdoored):
    """The stopping rule: passes continue while the accuracy on D_f is above stop_acc (0.2), so a run that stops
    before its cap (10) ends on the first pass at or below 0.2, and one pass fewer is still above it."""
    from unlearnlib.methods import REGISTRY as _REGISTRY
    from unlearnlib.training import accuracy

    cap, stop = _REGISTRY["npo"].hyperparameters["epochs"], _REGISTRY["npo"].hyperparameters["stop_acc"]
    result = unlearn("npo", backdoored, trigger_task, seed=0, device="cpu", lr=0.02)
    after = corruption_metrics(result.model, trigger_task, device="cpu")
    passes = result.info["epochs"]
    assert after["forget_acc"] <= stop and 1 <= passes < cap, "it must stop by its rule, before the cap"
    forget_acc = lambda n: accuracy(unlearn("npo", backdoored, trigger_task, seed=0, device="cpu", lr=0.02,  # noqa
                                            epochs=n, select="last").model, trigger_task.data,
                                    trigger_task.forget_idx, split="train", device="cpu")
    assert forget_acc(passes) <= stop
    if passes > 1:
        assert forget_acc(passes - 1) > stop, "it made a pass the rule did not call for"


def test_npo_makes_one_pass_at_least_and_keeps_the_pass_the_proxy_prefers(trigger_task, backdoored):
    from unlearnlib.methods.baselines import selection_proxy

    # stop_acc 1.0: the stopping rule holds from the start, yet one pass is made (as in the benchmark's code)
    once = unlearn("npo", backdoored, trigger_task, seed=0, device="cpu", lr=0.02, stop_acc=1.0)
    assert once.info["epochs"] == 1 and once.info["selected_epoch"] == 1
    # stop_acc 0: no early stop, so all 4 passes run; the kept pass scores at least the last one on the proxy
    kw = dict(seed=0, device="cpu", lr=0.02, epochs=4, stop_acc=0.0)
    chosen = unlearn("npo", backdoored, trigger_task, select="proxy", **kw)
    last = unlearn("npo", backdoored, trigger_task, select="last", **kw)
    assert chosen.info["epochs"] == last.info["epochs"] == 4 and 1 <= chosen.info["selected_epoch"] <= 4
    proxy = lambda m: selection_proxy(m, trigger_task, gamma=0.0, device="cpu")[0]  # noqa: E731
    assert proxy(chosen.model) >= proxy(last.model)
    with pytest.raises(ValueError, match="select"):
        unlearn("npo", backdoored, trigger_task, device="cpu", select="test")


def test_scrub_distance_is_scaled_by_t_squared_and_selection_reads_the_validation_split(trigger_task, backdoored):
    from unlearnlib.methods.baselines import distill_kl
    from unlearnlib.training import accuracy

    a, b = torch.randn(8, 10, generator=torch.Generator().manual_seed(0)), torch.randn(8, 10)
    plain = torch.nn.functional.kl_div(torch.log_softmax(a / 4, 1), torch.softmax(b / 4, 1), reduction="batchmean")
    assert distill_kl(a, b, 4.0).item() == pytest.approx(16 * plain.item())
    assert distill_kl(a, a, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    kw = dict(seed=0, device="cpu", epochs=2, max_epochs=1, lr=0.05)
    chosen = unlearn("scrub", backdoored, trigger_task, select="validation", **kw)
    last = unlearn("scrub", backdoored, trigger_task, select="last", **kw)
    assert chosen.info["passes"] == 3 and 1 <= chosen.info["selected_pass"] <= 3
    val = lambda m: accuracy(m, trigger_task.data, trigger_task.data.val_idx, split="train", device="cpu")  # noqa
    assert val(chosen.model) >= val(last.model)
    for bad, match in (({"max_loss": "ce"}, "max_loss"), ({"select": "test"}, "select")):
        with pytest.raises(ValueError, match=match):
            unlearn("scrub", backdoored, trigger_task, device="cpu", **bad)


def test_target_class_accuracy_sees_a_model_that_deletes_the_class(trigger_task, backdoored):
    """Never predicting the target class scores a high Healed on a trigger task; target_acc shows the cost."""
    before = corruption_metrics(backdoored, trigger_task, device="cpu")
    blind = corruption_metrics(unlearn("suppress_target", backdoored, trigger_task, device="cpu").model,
                               trigger_task, device="cpu")
    assert before["target_acc"] > 0.5 and blind["target_acc"] == 0.0
    assert blind["healed"] > before["healed"] + 0.3


def test_scrub_runs_on_the_capacity_model_and_keeps_test_accuracy(trigger_task, backdoored):
    before = corruption_metrics(backdoored, trigger_task, device="cpu")
    after = corruption_metrics(unlearn("scrub", backdoored, trigger_task, device="cpu", epochs=1,
                                       max_epochs=1).model, trigger_task, device="cpu")
    assert after["utility"] > before["utility"] - 0.1
    with pytest.raises(ValueError, match="max_epochs"):
        unlearn("scrub", backdoored, trigger_task, device="cpu", epochs=1, max_epochs=2)


def test_discovery_grid_records_every_cell_and_resumes_from_its_progress_file(small_fashion, tmp_path, monkeypatch):
    profile = get_profile("smoke").replace(arch="small-cnn-capacity", recipe=TINY_RECIPE.replace(epochs=1))
    data = small_fashion
    kw = dict(corruptions=["trigger", "random_label"], rates=[0.5, 1.0], seeds=[0], n_corrupt=40,
              progress_file=str(tmp_path / "grid.json"), forget_sets=str(tmp_path / "sets"), device="cpu",
              progress=False)
    records = run_discovery_grid(data, profile, {"original": {}, "npo": {"lr": 0.02}}, **kw)
    assert len(records) == 2 * 2 * 2
    assert {r["regularity"] for r in records} == {"high", "low"}
    assert all(0 <= r["healed"] <= 1 and "seconds" in r and "forget_acc" in r for r in records)
    assert len(list((tmp_path / "sets").glob("*.npz"))) == 4
    calls = []
    import unlearnlib.experiment as experiment
    monkeypatch.setattr(experiment, "unlearn", lambda *a, **k: calls.append(a) or pytest.fail("re-ran a done cell"))
    again = run_discovery_grid(data, profile, {"original": {}, "npo": {"lr": 0.02}}, **kw)
    assert json.dumps(again) == json.dumps(records) and not calls  # (NaN != NaN, so compare the text)
    (tmp_path / "grid.json").write_text("{broken")
    with pytest.raises(ValueError, match="grid.json"):
        run_discovery_grid(data, profile, {"original": {}}, **kw)


def test_label_swap_changes_labels_only_inside_the_two_classes_and_no_pixel(small_fashion):
    swap = tasks.corrupted(small_fashion, "label_swap", n_corrupt=60, swap_classes=("T-shirt/top", "Shirt"), seed=1)
    changed = np.flatnonzero((swap.data.y_train != small_fashion.y_train).numpy())
    assert np.array_equal(changed, swap.corruption["corrupt_idx"])
    assert set(small_fashion.y_train[changed].tolist()) == {0, 6}
    assert set(swap.data.y_train[changed].tolist()) == {0, 6}
    assert torch.equal(swap.data.x_train, small_fashion.x_train)


def test_corrupted_tuning_scores_validation_times_healed_without_rewarding_a_deleted_class(small_fashion, tmp_path):
    from unlearnlib.experiment import ProtocolError, choose_from_records, tune_corrupted

    profile = get_profile("smoke").replace(arch="small-cnn-capacity", recipe=TINY_RECIPE.replace(epochs=2), seeds=(0,))
    request = tasks.corrupted(small_fashion, "trigger", n_corrupt=60, discovery_rate=0.5, target_class=0, seed=7)
    reported = tasks.corrupted(small_fashion, "trigger", n_corrupt=60, discovery_rate=0.5, target_class=0, seed=0)
    grids = {"npo": [{"lr": 1e-7, "epochs": 1}, {"lr": 3e-3, "epochs": 1}, {"lr": 0.05, "epochs": 3}],
             "suppress_target": [{}, {"value": -1e4}, {"value": -1e3}]}
    result = tune_corrupted([request], profile, grids, seed=7, reported=[reported], device="cpu", progress=False)
    grid_records = [r for r in result.records if r["extension"] == 0]  # the grid; extensions come after it
    assert len(grid_records) == 6 and all("test_acc" not in r for r in result.records)
    assert all(r["score"] == pytest.approx(r["val_acc"] * r["healed"] * r["protected_factor"])
               for r in result.records if "score" in r)
    # deleting the trigger's target class raises healed but is not healing: the target-class factor scores it 0
    for r in (r for r in grid_records if r["method"] == "suppress_target"):
        assert r["healed"] > 0 and r["protected_val_acc"] == 0 and r["protected_factor"] == 0 and r["score"] == 0
    tiny, real, deleting = (r for r in grid_records if r["method"] == "npo")
    assert real["healed"] > tiny["healed"]  # a step of 1e-7 heals nothing; a pass at 3e-3 heals part of the found half
    # three passes at 0.05 heal by deleting the trigger's target class: the factor scores that down
    assert deleting["healed"] > tiny["healed"] and deleting["protected_factor"] < 0.5 < real["protected_factor"]
    assert deleting["score"] < real["score"]
    assert result.chosen["npo"] == {"lr": 3e-3, "epochs": 1}
    assert result.config["budget"] == 3 and result.config["seed"] == 7
    # the rule recomputed from the records gives the run's choice back
    assert choose_from_records(result.records, "score", resolution=result.config["resolution"]) == result.chosen
    kw = dict(device="cpu", progress=False)
    with pytest.raises(ProtocolError, match="reported request"):
        tune_corrupted([reported], profile, grids, seed=7, reported=[reported], **kw)
    with pytest.raises(ProtocolError, match="reported seed"):
        tune_corrupted([request], profile, grids, seed=0, reported=[reported], **kw)
    with pytest.raises(ProtocolError, match="same tuning budget"):
        tune_corrupted([request], profile, {**grids, "finetune": [{}]}, seed=7, reported=[reported], **kw)


def test_choosing_from_records_applies_the_tuning_rule_to_another_score():
    """What another score would have chosen among the settings a tuning run tried: the best mean, never a setting
    with a diverged run, ties within the resolution to the fewest passes."""
    from unlearnlib.experiment import choose_from_records

    def run(hp, seed, diverged=False, **scores):
        return {"method": "npo", "hparams": json.dumps(hp), "seed": seed, "diverged": diverged, "extension": 0,
                "refused": None, **scores}

    records = [run({"lr": 0.01}, s, score=0.5, old=0.9) for s in (7, 8)]
    records += [run({"lr": 0.02}, s, score=0.6, old=0.5) for s in (7, 8)]
    records += [run({"lr": 0.05}, 7, score=0.99, old=0.99), run({"lr": 0.05}, 8, True, score=np.nan, old=np.nan)]
    records.append({"method": "npo", "hparams": json.dumps({"lr": 0.1}), "seed": None, "score": np.nan,
                    "diverged": False, "extension": 1, "refused": "lr too large"})
    assert choose_from_records(records, "score", resolution=0.01) == {"npo": {"lr": 0.02}}
    assert choose_from_records(records, "old", resolution=0.01) == {"npo": {"lr": 0.01}}
    tied = [run({"lr": 0.01, "epochs": 5}, 7, score=0.505), run({"lr": 0.02, "epochs": 2}, 7, score=0.5),
            run({"lr": 0.05, "epochs": 2}, 7, score=0.5)]
    assert choose_from_records(tied, "score", resolution=0.01) == {"npo": {"lr": 0.02, "epochs": 2}}
    assert choose_from_records(tied, "score", resolution=0.001) == {"npo": {"lr": 0.01, "epochs": 5}}


def test_discovery_grid_runs_a_restricted_method_only_where_it_applies(small_fashion, tmp_path):
    profile = get_profile("smoke").replace(arch="small-cnn-capacity", recipe=TINY_RECIPE.replace(epochs=1))
    records = run_discovery_grid(small_fashion, profile, {"original": {}, "suppress_target": {}},
                                 corruptions=["trigger", "label_swap"], rates=[1.0], seeds=[0], n_corrupt=40,
                                 only={"suppress_target": ["trigger"]}, device="cpu", progress=False)
    assert sorted((r["corruption"], r["method"]) for r in records) == [
        ("label_swap", "original"), ("trigger", "original"), ("trigger", "suppress_target")]
    blind = next(r for r in records if r["method"] == "suppress_target")
    assert blind["target_acc"] == 0.0
