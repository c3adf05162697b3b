import math

import numpy as np
import pytest
import torch

from unlearnlib import metrics


def test_accuracy_from_logits_known_answer():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    assert metrics.accuracy_from_logits(logits, torch.tensor([0, 1, 1, 1])) == 0.75
    assert math.isnan(metrics.accuracy_from_logits(logits[:0], torch.tensor([], dtype=torch.long)))


def test_entropy_and_confidence_known_values():
    uniform = torch.zeros(3, 4)
    assert np.allclose(metrics.entropy(uniform), math.log(4))
    assert np.allclose(metrics.true_class_confidence(uniform, torch.tensor([0, 1, 2])), 0.25)
    assert np.allclose(metrics.cross_entropy(uniform, torch.tensor([0, 1, 2])), math.log(4))


def _confident(n, margin):
    """Logits whose softmax puts more mass on class 0 the larger the margin."""
    z = torch.zeros(n, 10)
    z[:, 0] = torch.as_tensor(margin, dtype=torch.float32)
    return z


def test_entropy_mia_calls_confident_samples_members_and_uncertain_ones_not():
    rng = np.random.default_rng(0)
    members = _confident(500, rng.normal(8, 0.5, 500))
    non_members = _confident(500, rng.normal(1, 0.5, 500))
    assert metrics.mia_entropy_lr(members, non_members, _confident(200, np.full(200, 8.0))) > 0.95
    assert metrics.mia_entropy_lr(members, non_members, _confident(200, np.full(200, 1.0))) < 0.05


def test_loss_mia_is_chance_on_identical_and_perfect_on_separated_losses():
    rng = np.random.default_rng(0)
    same = metrics.mia_loss_lr(rng.exponential(1, 1000), rng.exponential(1, 1000))
    assert 0.4 < same < 0.6
    assert metrics.mia_loss_lr(rng.uniform(0, 0.1, 500), rng.uniform(2, 3, 800)) > 0.99


def test_svc_mia_efficacy_counts_forget_samples_judged_non_members():
    rng = np.random.default_rng(0)
    retain, test = rng.uniform(0.9, 1.0, 600), rng.uniform(0.0, 0.5, 600)
    assert metrics.mia_efficacy_svc(retain, test, rng.uniform(0.0, 0.5, 100)) > 0.95
    assert metrics.mia_efficacy_svc(retain, test, rng.uniform(0.9, 1.0, 100)) < 0.05


def test_activation_distance_known_values():
    a = torch.tensor([[10.0, -10.0]] * 4)
    assert metrics.activation_distance(a, a) == 0
    assert metrics.activation_distance(a, -a) == pytest.approx(math.sqrt(2), abs=1e-4)


def test_evaluate_returns_every_metric_in_range(trained, class_task):
    original, retrain = trained
    rec = metrics.evaluate(original, class_task, reference=retrain, device="cpu", svc_max_samples=300)
    per_class = metrics.per_class(rec)
    assert list(per_class) == class_task.data.classes and all(0 <= v <= 1 for v in per_class.values())
    expected = {"forget_acc", "retain_acc", "test_acc", "test_forget_acc", *metrics.MIA_VARIANTS,
                "activation_distance", *(f"test_acc/{c}" for c in class_task.data.classes)}
    assert expected | set(metrics.DIVERGENCE_FIELDS) == set(rec)
    assert rec["diverged"] is False and rec["diverged_step"] is None
    assert all(metrics.is_metric(k) for k in rec if k not in metrics.DIVERGENCE_FIELDS)
    for k, v in rec.items():
        if k not in metrics.DIVERGENCE_FIELDS:
            assert 0 <= v <= (2 ** 0.5 if k == "activation_distance" else 1), k
    assert rec["forget_acc"] > 0.8  # the original model still knows the class


def test_retrain_model_has_no_activation_distance_to_itself(trained, class_task):
    _, retrain = trained
    rec = metrics.evaluate(retrain, class_task, reference=retrain, device="cpu", svc_max_samples=300)
    assert rec["activation_distance"] == 0 and rec["forget_acc"] < 0.05


def test_the_loss_attack_scores_a_forget_set_of_a_few_images():
    """A tiny forget set (the paper-smoke check forgets a CIFAR-100 class of a few images) still gets a score: the
    attack holds out one pair when a tenth of the pairs would be less."""
    rng = np.random.default_rng(0)
    few = metrics.mia_loss_lr(rng.uniform(0, 0.1, 3), rng.uniform(2, 3, 50))
    assert few == pytest.approx(1.0)  # separable losses, so every held-out pair is told apart
    assert np.isnan(metrics.mia_loss_lr(rng.uniform(0, 1, 1), rng.uniform(0, 1, 50)))
