"""The evaluation protocol: a fixed validation split that no model trains on, tuning that never reads the test split
and never uses a reported request or seed, equal budgets, and the trivial baselines."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from unlearnlib import data as data_mod
from unlearnlib import tasks
from unlearnlib.experiment import ProtocolError, tune
from unlearnlib.methods import unlearn
from unlearnlib.metrics import quick_evaluate
from unlearnlib.profiles import Profile
from unlearnlib.training import predict_logits

from conftest import TINY_RECIPE

GRIDS = {"gradient_ascent": [{"lr": 1e-7}, {"lr": 0.02, "epochs": 3}],
         "random_labels": [{"epochs": 1}, {"epochs": 1, "lr": 0.05}]}


def _profile():
    return Profile(name="test", dataset="fashion-mnist", arch="small-cnn", recipe=TINY_RECIPE, seeds=(0,),
                   train_size=3000, test_size=1000, svc_max_samples=300)


# --------------------------------------------------------------------------------------------------------------
# The validation split

def test_validation_split_is_fixed_stratified_and_outside_every_task(fashion, small_fashion):
    val = fashion.val_idx
    assert len(val) == 5000 and np.array_equal(val, data_mod.carve_validation(fashion.y_train.numpy()))
    assert np.bincount(fashion.y_train.numpy()[val]).tolist() == [500] * 10
    assert data_mod.validation_file("fashion-mnist").exists()
    assert data_mod.validation_file("fashion-mnist-super") == data_mod.validation_file("fashion-mnist")
    # the subset keeps the validation samples of the full split it contains, and nothing else
    assert 0.05 < len(small_fashion.val_idx) / len(small_fashion.y_train) < 0.15
    for task in (tasks.full_class(small_fashion, "Trouser"), tasks.random_samples(small_fashion, 50, seed=3),
                 tasks.corrupted(small_fashion, "trigger", n_corrupt=30, discovery_rate=0.5),
                 tasks.corrupted(small_fashion, "label_swap", n_corrupt=30, swap_classes=(2, 4))):
        assert np.intersect1d(task.train_idx, small_fashion.val_idx).size == 0
        assert len(task.train_idx) + len(task.val_idx) == len(small_fashion.y_train)
    cls = tasks.full_class(small_fashion, "Trouser")
    assert (small_fashion.y_train[cls.val_forget_idx] == 1).all() and len(cls.val_forget_idx) > 0
    assert not (small_fashion.y_train[cls.val_retain_idx] == 1).any()


def test_instances_in_the_validation_split_are_refused(small_fashion):
    with pytest.raises(ValueError, match="validation split.*data.train_idx"):
        tasks.instances(small_fashion, [int(small_fashion.val_idx[0]), int(small_fashion.train_idx[0])])


def test_a_validation_file_that_does_not_match_the_dataset_is_named_with_the_remedy(small_fashion, tmp_path):
    path = data_mod.validation_file(small_fashion.name, tmp_path)
    first = data_mod.validation_split(small_fashion, root=tmp_path)  # carved and written
    assert np.array_equal(first, data_mod.validation_split(small_fashion, root=tmp_path))  # read back
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "labels_digest": "0000000000000000"}))
    with pytest.raises(ValueError, match=rf"{path}.*another version.*delete"):
        data_mod.validation_split(small_fashion, root=tmp_path)
    path.write_text('{"n_train": 3')
    with pytest.raises(ValueError, match=rf"{path} is damaged"):
        data_mod.validation_split(small_fashion, root=tmp_path)


def test_a_forget_set_saved_before_the_protocol_is_refused_with_the_remedy(small_fashion, tmp_path):
    path = tasks.full_class(small_fashion, "Bag").save(tmp_path / "old.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(json.dumps({**meta, "format": 1}))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="before the evaluation protocol.*Delete it"):
        tasks.ForgetTask.load(path, data=small_fashion)


# --------------------------------------------------------------------------------------------------------------
# Tuning

@pytest.fixture(scope="module")
def tuning_request(small_fashion):
    return tasks.full_class(small_fashion, "Pullover")


def _poisoned(data):
    """The same data with the test split replaced by noise and shuffled labels."""
    gen = torch.Generator().manual_seed(0)
    return replace(data, x_test=torch.randint(0, 256, data.x_test.shape, generator=gen, dtype=torch.uint8),
                   y_test=data.y_test[torch.randperm(len(data.y_test), generator=gen)])


def test_tuning_chooses_on_validation_data_and_never_reads_the_test_split(small_fashion, class_task, tuning_request):
    result = tune(tuning_request, _profile(), GRIDS, seed=1, reported=[class_task], device="cpu", progress=False)
    grid = [r for r in result.records if r["extension"] == 0]  # then the grids' edges are extended (test_tuning_integrity)
    assert len(grid) == 4 and all("val_acc" in r and "test_acc" not in r for r in result.records)
    useless = next(r for r in result.records if '"lr": 1e-07' in r["hparams"])
    assert useless["retrain_gap"] > 0.5  # a step this small forgets nothing of the tuning class
    assert result.chosen["gradient_ascent"] == {"lr": 0.02, "epochs": 3}
    # poison the test split: the scores and the choice are exactly the same
    poisoned = tasks.full_class(_poisoned(small_fashion), "Pullover")
    again = tune(poisoned, _profile(), GRIDS, seed=1, reported=[class_task], device="cpu", progress=False)
    assert again.chosen == result.chosen
    for a, b in zip(result.records, again.records):
        assert (a["hparams"], a["forget_acc"], a["val_acc"], a["retrain_gap"]) == \
            (b["hparams"], b["forget_acc"], b["val_acc"], b["retrain_gap"])
    cfg = result.config
    assert cfg["seed"] == 1 and cfg["seeds"] == [1] and cfg["budget"] == 2 and cfg["reported_seeds"] == [0]
    assert cfg["records"] == result.records  # every record, extensions included, goes into a results file
    assert "Pullover" in cfg["request"] and cfg["chosen"] == result.chosen and cfg["grids"]["random_labels"]


def test_tuning_refuses_a_reported_request_a_reported_seed_the_test_split_and_unequal_budgets(
        small_fashion, class_task, tuning_request):
    kw = dict(device="cpu", progress=False)
    same_class = tasks.full_class(small_fashion, "Trouser")  # another object for the reported request
    with pytest.raises(ProtocolError, match="is a reported request"):
        tune(same_class, _profile(), GRIDS, seed=1, reported=[class_task], **kw)
    subset = tasks.random_samples(small_fashion, 40, seed=5)
    with pytest.raises(ProtocolError, match="is a reported request"):
        tune(tasks.random_samples(small_fashion, 40, seed=5), _profile(), GRIDS, seed=1, reported=[subset], **kw)
    with pytest.raises(ProtocolError, match="also a reported seed"):
        tune(tuning_request, _profile(), GRIDS, seed=0, reported=[class_task], **kw)
    with pytest.raises(ProtocolError, match="read only to report"):
        tune(tuning_request, _profile(), GRIDS, seed=1, reported=[class_task], split="test", **kw)
    with pytest.raises(ProtocolError, match="same tuning budget"):
        tune(tuning_request, _profile(), {**GRIDS, "finetune": [{}]}, seed=1, reported=[class_task], **kw)


def test_a_sealed_request_has_no_test_split(class_task):
    sealed = class_task.sealed()
    assert len(sealed.data.y_test) == 0 and len(sealed.test_retain_idx) == 0
    assert np.array_equal(sealed.forget_idx, class_task.forget_idx) and np.array_equal(sealed.val_idx,
                                                                                        class_task.val_idx)


# --------------------------------------------------------------------------------------------------------------
# Trivial baselines

def test_mask_classes_leaves_every_other_logit_bitwise_unchanged(trained, class_task, small_fashion):
    original, _ = trained
    masked = unlearn("mask_classes", original, class_task, device="cpu")
    assert masked.seconds < 1
    before = predict_logits(original, small_fashion, None, split="test", device="cpu")
    after = predict_logits(masked.model, small_fashion, None, split="test", device="cpu")
    forgotten = class_task.forget_classes
    keep = [c for c in range(small_fashion.num_classes) if c not in forgotten]
    assert torch.equal(after[:, keep], before[:, keep])
    assert (after[:, forgotten] == -1e4).all()
    rec = quick_evaluate(masked.model, class_task, device="cpu")
    assert rec["forget_acc"] == 0 and rec["test_forget_acc"] == 0
    assert rec[f"test_acc/{small_fashion.classes[forgotten[0]]}"] == 0
    # the original is untouched: it still predicts the class
    assert quick_evaluate(original, class_task, device="cpu")["forget_acc"] > 0.5


def test_mask_classes_refuses_a_task_without_a_class(small_fashion, trained):
    with pytest.raises(ValueError, match="no class to mask.*'original'"):
        unlearn("mask_classes", trained[0], tasks.random_samples(small_fashion, 20), device="cpu")


def test_suppress_target_never_predicts_the_trigger_target(small_fashion, trained):
    trigger = tasks.corrupted(small_fashion, "trigger", n_corrupt=30, target_class="Bag", seed=0)
    out = unlearn("suppress_target", trained[0], trigger, device="cpu").model
    predictions = predict_logits(out, trigger.data, None, split="test", device="cpu").argmax(1)
    assert not (predictions == trigger.params["target_class"]).any()
    with pytest.raises(ValueError, match="trigger task.*target_class"):
        unlearn("suppress_target", trained[0], tasks.random_samples(small_fashion, 20), device="cpu")
    explicit = unlearn("suppress_target", trained[0], tasks.random_samples(small_fashion, 20), device="cpu",
                       target_class="Coat").model
    assert not (predict_logits(explicit, small_fashion, None, device="cpu").argmax(1) == 4).any()


def test_refuse_instances_misclassifies_exactly_the_forget_images_and_nothing_else(small_fashion, trained):
    original = trained[0]
    labels = small_fashion.y_train.numpy()
    before_train = predict_logits(original, small_fashion, small_fashion.train_idx[:400], split="train", device="cpu")
    recognised = small_fashion.train_idx[:400][before_train.argmax(1).numpy() == labels[small_fashion.train_idx[:400]]]
    request = tasks.instances(small_fashion, recognised[:12])
    out = unlearn("refuse_instances", original, request, device="cpu")
    assert out.seconds < 1
    forget_logits = predict_logits(out.model, small_fashion, request.forget_idx, split="train", device="cpu")
    assert not (forget_logits.argmax(1).numpy() == labels[request.forget_idx]).any()  # every one misclassified
    # ... and each goes to the original's runner-up class
    orig_forget = predict_logits(original, small_fashion, request.forget_idx, split="train", device="cpu")
    assert torch.equal(forget_logits.argmax(1), orig_forget.topk(2, dim=1).indices[:, 1])
    # every other input is untouched, bit for bit, including a forget image moved by one pixel value
    assert torch.equal(predict_logits(out.model, small_fashion, None, split="test", device="cpu"),
                       predict_logits(original, small_fashion, None, split="test", device="cpu"))
    x = small_fashion.normalize(small_fashion.x_train[torch.as_tensor(request.forget_idx[:1])]).clone()
    x[0, 0, 0, 0] += 0.05
    with torch.no_grad():
        assert torch.equal(out.model.eval()(x), original.eval()(x))
    with pytest.raises(ValueError, match="at least one"):
        from unlearnlib.models import InstanceFilter
        InstanceFilter(original, x[:0], torch.zeros(0))


def test_tuning_under_a_sample_budget_scores_forgetting_on_validation_images(class_task, tuning_request):
    """With a few-shot view the method reads only its budget, so the score cannot read D_f beyond it either."""
    seen = []

    def budget(task, seed):
        view = tasks.few_shot(task, 5, seed=seed)
        seen.append(len(view.data.y_train))
        return view

    grid = {"random_labels": [{"epochs": 3, "lr": 1e-7}, {"epochs": 3, "lr": 0.01}]}
    result = tune(tuning_request, _profile(), grid, seed=1, reported=[class_task], view=budget, extensions=0,
                  device="cpu", progress=False)
    assert seen == [5 * 10] and result.config["view"] == 5
    assert "val_forget_acc" in result.config["selection"]
    ref = result.config["reference"]
    for r in result.records:  # the score reads the forgotten class's validation images, not D_f beyond the budget
        assert r["retrain_gap"] == pytest.approx(abs(r["val_forget_acc"] - ref["val_forget_acc"])
                                                 + abs(r["val_acc"] - ref["val_acc"]))
    idle, active = result.records
    assert result.chosen == {"random_labels": {"epochs": 3, "lr": 0.01}}
    assert active["retrain_gap"] == min(r["retrain_gap"] for r in result.records) < idle["retrain_gap"]
    assert active["val_forget_acc"] < idle["val_forget_acc"]  # it forgets the class on images it never saw


def test_one_method_can_be_tuned_under_two_labels(class_task, tuning_request):
    """A label that is not a registered method runs the method ``methods`` maps it to (e.g. LFSSD in two orders)."""
    grids = {"lfssd": [{"alpha": 6.0}], "lfssd (official order)": [{"alpha": 6.0, "order": "official"}]}
    result = tune(tuning_request, _profile(), grids, seed=1, reported=[class_task], device="cpu", progress=False,
                  methods={"lfssd (official order)": "lfssd"})
    assert [r["method"] for r in result.records] == ["lfssd", "lfssd (official order)"]
    assert result.config["methods"] == {"lfssd": "lfssd", "lfssd (official order)": "lfssd"}
    with pytest.raises(ValueError, match="unknown method"):
        tune(tuning_request, _profile(), {"lfssd (official order)": [{}]}, seed=1, reported=[class_task],
             device="cpu", progress=False)


def test_few_shot_tuning_reads_only_its_budget_and_no_retrain_model(small_fashion, class_task, tuning_request):
    """A few-shot class method is tuned within its setting: k samples per class to run on, k validation images per
    class to score on, the original model, and nothing else (no retrain model, no complete training data)."""
    import unlearnlib.experiment as E
    from unlearnlib.experiment import tune_few_shot, validation_budget

    k = 5
    grids = {"finetune": [{"epochs": 1, "lr": 1e-7}, {"epochs": 30, "lr": 0.05}],
             "neggrad_plus": [{"epochs": 30, "lr": 0.01, "alpha": 0.9}, {"epochs": 1, "lr": 1e-7, "alpha": 0.9}]}
    trained = []
    real = E.train_or_load

    def spy(data, indices, arch, recipe, *, role, **kw):
        trained.append(role)
        return real(data, indices, arch, recipe, role=role, **kw)

    E.train_or_load = spy
    try:
        result = tune_few_shot(tuning_request, _profile(), grids, per_class=k, seed=1, reported=[class_task],
                               device="cpu", progress=False)
    finally:
        E.train_or_load = real
    assert trained == ["original"], "no retrain model is trained or loaded"
    n_classes = small_fashion.num_classes
    assert result.config["images_read"] == 2 * k * n_classes
    forget, retain = validation_budget(tuning_request.sealed(), k, seed=1)
    assert len(forget) == k and len(retain) == k * (n_classes - 1)
    assert set(forget) | set(retain) <= set(small_fashion.val_idx.tolist())
    by_setting = {(r["method"], r["hparams"]): r for r in result.records}
    idle = by_setting["finetune", '{"epochs": 1, "lr": 1e-07}']
    assert idle["val_forget_acc"] > 0.5 and idle["retrain_gap"] > 0.5  # doing nothing forgets nothing
    assert min(r["retrain_gap"] for r in result.records) < idle["retrain_gap"]
    with pytest.raises(ProtocolError, match="is a reported request"):
        tune_few_shot(class_task, _profile(), grids, per_class=k, seed=1, reported=[class_task], device="cpu",
                      progress=False)
    with pytest.raises(ProtocolError, match="has no such target"):
        tune_few_shot(tasks.random_samples(small_fashion, 40, seed=3), _profile(), grids, per_class=k, seed=1,
                      reported=[class_task], device="cpu", progress=False)
