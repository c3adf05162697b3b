"""The per-example attack (U-LiRA style): its statistics on known distributions, its bookkeeping of unusable models,
and on real data that it finds the original and cannot find retraining."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from unlearnlib import get_profile, tasks, ulira
from unlearnlib.training import Recipe


def test_logit_confidence_is_the_log_odds_of_the_true_class_and_stays_finite():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [300.0, 0.0, -5.0]])
    labels = torch.tensor([0, 2, 0])
    phi = ulira.logit_confidence(logits, labels)
    p = torch.softmax(logits.double(), 1)[torch.arange(3), labels].numpy()
    assert np.allclose(phi[:2], np.log(p[:2] / (1 - p[:2])))
    assert np.isfinite(phi[2]) and phi[2] > 250        # p_y rounds to 1, the log-odds do not


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 60).astype(float)
    expected = roc_auc_score(np.r_[np.ones(40), np.zeros(60)], np.r_[pos, neg])
    assert ulira.roc_auc(pos, neg) == pytest.approx(expected)


def test_tpr_at_fpr_never_lets_more_false_positives_through_than_allowed():
    rng = np.random.default_rng(1)
    neg, pos = rng.normal(0, 1, 500), rng.normal(1, 1, 500)
    for fpr in (0.01, 0.05, 0.2):
        sorted_neg = np.sort(neg)[::-1]
        threshold = sorted_neg[int(fpr * len(neg))]
        assert np.mean(neg > threshold) <= fpr
        assert ulira.tpr_at_fpr(pos, neg, fpr) == pytest.approx(np.mean(pos > threshold))
    assert ulira.tpr_at_fpr(np.zeros(10), np.zeros(10), 0.05) == 0.0          # ties buy nothing
    assert ulira.tpr_at_fpr(np.ones(10), np.zeros(10), 0.01) == 1.0


def _pool(seeds, n, rng, shift=0.0, example_means=None):
    means = example_means if example_means is not None else np.zeros(n)
    return {s: means + shift + rng.normal(0, 0.3, n) for s in seeds}


def test_the_attack_separates_per_example_shifts_that_a_population_threshold_misses():
    """Each example has its own typical confidence (spread 3), and unlearning leaves every example 0.6 above its
    retrained value: a single threshold for all examples sees little, the per-example test sees it."""
    rng = np.random.default_rng(2)
    seeds, n = range(9), 400
    means = rng.normal(0, 3, n)
    unlearned, retrained = _pool(seeds, n, rng, 0.6, means), _pool(seeds, n, rng, 0.0, means)
    folds = ulira.leave_one_seed_out(unlearned, retrained)
    per_example = np.mean([f["ulira_auc"] for f in folds])
    population = np.mean([ulira.roc_auc(unlearned[s], retrained[s]) for s in seeds])
    assert per_example > 0.9 and population < 0.6
    assert all(f["shadows_unlearned"] == 8 and f["shadows_retrained"] == 8 for f in folds)


def test_the_attack_finds_nothing_when_both_pools_come_from_one_distribution():
    rng = np.random.default_rng(3)
    means = rng.normal(0, 3, 600)
    unlearned, retrained = _pool(range(9), 600, rng, 0.0, means), _pool(range(9), 600, rng, 0.0, means)
    aucs = [f["ulira_auc"] for f in ulira.leave_one_seed_out(unlearned, retrained)]
    assert abs(np.mean(aucs) - 0.5) < 0.03
    same = ulira.leave_one_seed_out(retrained, retrained)         # retraining attacked against itself: exactly 0.5
    assert all(f["ulira_auc"] == 0.5 for f in same)
    null = ulira.null_check(retrained)
    assert len(null) == 4 and all(abs(r["ulira_auc"] - 0.5) < 0.1 for r in null)


def test_an_unusable_model_is_neither_a_shadow_nor_a_scored_target():
    rng = np.random.default_rng(4)
    unlearned, retrained = _pool(range(4), 50, rng, 1.0), _pool(range(4), 50, rng)
    unlearned[2] = None                                           # e.g. diverged
    folds = {f["seed"]: f for f in ulira.leave_one_seed_out(unlearned, retrained)}
    assert np.isnan(folds[2]["ulira_auc"]) and "target" in folds[2]["why_unscored"]
    assert folds[0]["shadows_unlearned"] == 2 and folds[0]["shadows_retrained"] == 3
    unlearned[1] = None                                           # seed 0's fold now has one unlearned shadow
    folds = {f["seed"]: f for f in ulira.leave_one_seed_out(unlearned, retrained)}
    assert np.isnan(folds[0]["ulira_auc"]) and "shadow" in folds[0]["why_unscored"]
    with pytest.raises(ValueError, match="at least 2 shadow"):
        ulira.fit_gaussians(np.zeros((1, 5)))


def test_targets_limit_the_held_out_seeds_and_keep_the_others_as_shadows():
    rng = np.random.default_rng(5)
    unlearned, retrained = _pool(range(6), 30, rng, 1.0), _pool(range(6), 30, rng)
    folds = ulira.leave_one_seed_out(unlearned, retrained, targets=[4, 5])
    assert [f["seed"] for f in folds] == [4, 5] and folds[0]["shadows_unlearned"] == 5


def test_chosen_setting_names_its_source_and_says_what_is_missing(tmp_path):
    import json

    (tmp_path / "foundations").mkdir()
    (tmp_path / "foundations" / "cpu.json").write_text(json.dumps({"config": {"chosen": {"npo": {"lr": 0.1}}}}))
    hp, source = ulira.chosen_setting("foundations", ("chosen", "npo"), root=tmp_path)
    assert hp == {"lr": 0.1} and "foundations" in source
    with pytest.raises(KeyError, match="scrub"):
        ulira.chosen_setting("foundations", ("chosen", "scrub"), root=tmp_path)
    with pytest.raises(FileNotFoundError, match="execute the ssd chapter"):
        ulira.chosen_setting("ssd", ("chosen",), root=tmp_path)


def test_on_real_data_the_attack_finds_the_original_and_not_retraining(small_fashion, tmp_path, monkeypatch):
    """Models that memorise (a 1,000-image training set, 8 epochs): the original is told from retraining on most
    forgotten examples, retraining attacked as a method scores 0.5, and a stored run is reused."""
    profile = get_profile("smoke").replace(
        recipe=Recipe(epochs=8, batch_size=64, lr=3e-3, optimizer="adam", weight_decay=0.0, schedule="onecycle"))
    data = small_fashion
    keep = np.random.default_rng(0).choice(len(data.y_train), 1000, replace=False)
    request = tasks.random_samples(data, 100, seed=7)
    request = tasks.ForgetTask(data=data, kind=request.kind, forget_idx=np.intersect1d(request.forget_idx, keep)[:60],
                               retain_idx=np.setdiff1d(np.intersect1d(request.train_idx, keep),
                                                       request.forget_idx), params={"n": 60},
                               test_retain_idx=request.test_retain_idx, test_forget_idx=request.test_forget_idx)
    store = tmp_path / "store.json"
    scores = ulira.model_scores(request, profile, {"original": {}, "retrain": {}}, seeds=range(5), device="cpu",
                                progress=False, store=store)
    records, _ = ulira.attack_records(scores, task_label="test")
    auc = {m: np.mean([r["ulira_auc"] for r in records if r["method"] == m]) for m in ("original", "retrain")}
    assert auc["retrain"] == 0.5
    assert auc["original"] > 0.75, auc
    assert all(r["shadows_unlearned"] == 4 for r in records)
    again = ulira.model_scores(request, profile, {"original": {}, "retrain": {}}, seeds=range(5), device="cpu",
                               progress=False, store=store)
    assert np.array_equal(again["original"][3]["phi"], scores["original"][3]["phi"])
    # a stored entry is reused only under the same key: planted values come back until the attack's code changes
    import json

    stored = json.loads(store.read_text())
    stored["original|3"]["phi"] = [0.0] * len(stored["original|3"]["phi"])
    store.write_text(json.dumps(stored))
    reused = ulira.model_scores(request, profile, {"original": {}}, seeds=[3], device="cpu", progress=False, store=store)
    assert not reused["original"][3]["phi"].any()
    monkeypatch.setattr(ulira, "modules_fingerprint", lambda modules: "other code")
    redone = ulira.model_scores(request, profile, {"original": {}}, seeds=[3], device="cpu", progress=False, store=store)
    assert np.array_equal(redone["original"][3]["phi"], scores["original"][3]["phi"])
