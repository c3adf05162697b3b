"""Fisher forgetting (Golatkar et al., CVPR 2020), the baseline of the mixed-privacy paper: the Fisher diagonal is the
expected one of the model's own predictions, the noise is large exactly where D_r does not constrain a weight, it
cannot be regenerated unless a seed is passed, and a class request is forgotten while the rest survives."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unlearnlib import tasks
from unlearnlib.methods import baselines as B
from unlearnlib.methods import mixed_privacy as mp
from unlearnlib.methods import unlearn
from unlearnlib.models import model_for
from unlearnlib.training import accuracy, train_or_load

from conftest import TINY_RECIPE


def test_expected_fisher_is_the_probability_weighted_mean_of_squared_per_class_gradients(small_fashion):
    """Against the official computation: one sample at a time, one backward pass per class."""
    model = model_for(small_fashion, "mlp", seed=0).eval()
    idx = small_fashion.train_idx[:6]
    fast = B.expected_fisher(model, small_fashion, idx, batch_size=4, device="cpu")
    slow = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in idx:
        x = small_fashion.normalize(small_fashion.x_train[i:i + 1])
        logits = model(x)
        prob = F.softmax(logits, 1).detach()[0]
        for c in range(small_fashion.num_classes):
            model.zero_grad()
            F.cross_entropy(logits, torch.tensor([c])).backward(retain_graph=True)
            for n, p in model.named_parameters():
                slow[n] += prob[c] * p.grad.pow(2) / len(idx)
    for n in slow:
        assert torch.allclose(fast[n], slow[n], rtol=1e-4, atol=1e-10), n


def test_expected_fisher_bounds_its_memory_without_changing_the_result(small_fashion):
    """The per-class gradients of a batch take samples x classes x weights floats: ~13 GB for 32 samples of a
    ResNet-18 (which ran a 24 GB machine out of memory). A memory limit cuts the batch into chunks, and the Fisher
    is the same sum."""
    assert B.fisher_chunk(32, 10, 11_200_000, memory_limit=2 ** 30) == 1          # ResNet-18 on a CPU: one at a time
    assert B.fisher_chunk(32, 10, 100_000, memory_limit=2 ** 30) == 32            # a small CNN: the whole batch
    assert B.fisher_chunk(32, 10, 1_000_000, memory_limit=2 ** 30) == 8           # in between: what fits
    model = model_for(small_fashion, "mlp", seed=0).eval()
    idx = small_fashion.train_idx[:6]
    whole = B.expected_fisher(model, small_fashion, idx, batch_size=6, device="cpu")
    weights = sum(p.numel() for p in model.parameters())
    tight = 2 * 3 * small_fashion.num_classes * weights * 4                        # room for two samples at a time
    assert B.fisher_chunk(6, small_fashion.num_classes, weights, memory_limit=tight) == 2
    chunked = B.expected_fisher(model, small_fashion, idx, batch_size=6, device="cpu", memory_limit=tight)
    for n in whole:
        assert torch.allclose(whole[n], chunked[n], rtol=1e-5, atol=1e-12), n


@pytest.fixture(scope="module")
def original(small_fashion, class_task):
    return train_or_load(small_fashion, class_task.train_idx, "small-cnn", TINY_RECIPE, seed=0, role="original",
                         device="cpu", progress=False).model


def test_fisher_forgetting_forgets_the_class_and_keeps_the_rest(small_fashion, class_task, original):
    """On a class task, with the official shaping (the forgotten class's classifier row zeroed): the class is no
    longer recognised, and the remaining classes' test accuracy stays within a few points of the original's.
    Measured: forget accuracy 0.02, remaining-class test accuracy 0.784 against 0.817. The forgetting comes from the
    row zeroing: with ``zero_forgotten_rows=False`` the noise alone, at the official alpha, leaves 0.99 recognised."""
    out = unlearn("fisher", original, class_task, device="cpu", noise_seed=0, retain_samples=500).model
    before = accuracy(original, small_fashion, class_task.test_retain_idx)
    after = accuracy(out, small_fashion, class_task.test_retain_idx)
    assert accuracy(original, small_fashion, class_task.forget_idx, split="train") > 0.8
    assert accuracy(out, small_fashion, class_task.forget_idx, split="train") < 0.05
    assert after > before - 0.05


def test_the_noise_is_large_where_the_retained_data_do_not_constrain_a_weight(small_fashion, class_task, original):
    """Without the row zeroing, the noise per classifier row follows 1 / Fisher on D_r: the forgotten class's row,
    which D_r hardly constrains, moves more than any remaining class's row (measured: 0.33 against at most 0.29)."""
    out = unlearn("fisher", original, class_task, device="cpu", noise_seed=0, retain_samples=500,
                  zero_forgotten_rows=False).model
    head = B._output_layer(original, 10)
    moved = B._output_layer(out, 10)
    shift = (moved.weight - head.weight).detach().norm(dim=1)
    (forgotten,) = class_task.forget_classes
    assert shift[forgotten] > shift[np.arange(10) != forgotten].max()


def test_the_noise_is_fresh_unless_a_noise_seed_is_given(small_fashion, class_task, original):
    hp = dict(device="cpu", retain_samples=100, zero_forgotten_rows=False)
    weights = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])
    a, b = (weights(unlearn("fisher", original, class_task, **hp).model) for _ in range(2))
    c, d = (weights(unlearn("fisher", original, class_task, noise_seed=3, **hp).model) for _ in range(2))
    assert not torch.equal(a, b)
    assert torch.equal(c, d)


def test_fisher_forgetting_adds_noise_to_the_user_weights_of_a_mixed_linear_model_only(small_fashion, original):
    core_idx, user_idx = mp.core_split(small_fashion, 0.5, seed=0)
    model = mp.MixedLinear(copy.deepcopy(original), core_idx=core_idx, user_idx=user_idx, mu=0.1)
    mp.train_user_weights(model, small_fashion, user_idx, epochs=1, device="cpu", progress=False)
    request = tasks.instances(small_fashion, user_idx[:20])
    out = unlearn("fisher", model, request, device="cpu", noise_seed=0).model
    assert out.unlearn_info["retain_samples"] == len(user_idx) - 20  # the remaining user data, not the core
    assert not torch.equal(out.w_user, model.w_user)
    assert all(torch.equal(p, q) for p, q in zip(out.tail.parameters(), model.tail.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(out.trunk.parameters(), model.trunk.parameters()))


@pytest.fixture(scope="module")
def mixed(small_fashion, original):
    core_idx, user_idx = mp.core_split(small_fashion, 0.5, seed=0)
    model = mp.MixedLinear(copy.deepcopy(original), core_idx=core_idx, user_idx=user_idx, mu=0.1)
    return mp.train_user_weights(model, small_fashion, user_idx, epochs=1, device="cpu", progress=False)


def test_the_gaussian_fisher_of_a_mixed_linear_model_is_the_mean_squared_jacobian(small_fashion, mixed):
    """The mixed-linear model is fitted with the squared error, so its Fisher is the Gaussian's: per sample and
    output, the squared gradient of the output itself (no softmax, no weighting by probabilities). Checked against
    one backward pass per output; the categorical Fisher differs from it."""
    idx = mixed.user_idx[:4]
    fast = B.expected_fisher(mixed, small_fashion, idx, batch_size=3, device="cpu", likelihood="gaussian")["w_user"]
    slow = torch.zeros_like(mixed.w_user)
    for i in idx:
        out = mixed(small_fashion.normalize(small_fashion.x_train[i:i + 1]))
        for k in range(small_fashion.num_classes):
            (grad,) = torch.autograd.grad(out[0, k], mixed.w_user, retain_graph=True)
            slow += grad.pow(2) / len(idx)
    assert torch.allclose(fast, slow, rtol=1e-4, atol=1e-10)
    categorical = B.expected_fisher(mixed, small_fashion, idx, batch_size=3, device="cpu")["w_user"]
    assert not torch.allclose(categorical, fast, rtol=1e-2)
    with pytest.raises(ValueError, match="gaussian"):
        B.expected_fisher(mixed, small_fashion, idx, device="cpu", likelihood="mse")


def test_fisher_forgetting_shapes_the_user_weights_per_tensor_of_the_tail(small_fashion, mixed, monkeypatch):
    """With a flat Fisher of ones, the official shaping gives variance alpha to every weight matrix of the tail and
    10 alpha to the classifier and to one-dimensional tensors (biases). A flat ``w_user`` treated as one
    one-dimensional tensor would give 10 alpha to every weight, the classifier's cap would never apply; the noise's
    spread per tensor tells the two apart."""
    monkeypatch.setattr(B, "expected_fisher", lambda model, *a, **k: {"w_user": torch.ones_like(model.w_user)})
    request = tasks.instances(small_fashion, mixed.user_idx[:20])
    alpha = 1e-4
    out = unlearn("fisher", mixed, request, device="cpu", noise_seed=0, alpha=alpha).model
    assert out.unlearn_info["likelihood"] == "gaussian" and not out.unlearn_info["zero_forgotten_rows"]
    noise = mixed.as_tangent(out.w_user.detach() - mixed.w_user.detach())
    classifier = B._output_layer(mixed.tail, small_fashion.num_classes, trainable_only=False)
    classifier_names = {n for n, p in mixed.tail.named_parameters() if any(p is q for q in classifier.parameters())}
    hidden = [n for n, t in noise.items() if t.dim() > 1 and n not in classifier_names and t.numel() >= 1000]
    assert hidden and classifier_names
    for n, t in noise.items():
        expected = 10 * alpha if (n in classifier_names or t.dim() == 1) else alpha
        if t.numel() >= 100:  # enough draws for the spread to be within 20 % of its expectation
            assert abs(t.std().item() / expected ** 0.5 - 1) < 0.2, n


def test_bad_requests_are_refused_with_a_clear_error(small_fashion, class_task, original, monkeypatch):
    from unlearnlib.methods import baselines

    def no_curvature(*args, **kwargs):
        raise AssertionError("a bad request must be refused before the Fisher pass over D_r")

    monkeypatch.setattr(baselines, "expected_fisher", no_curvature)
    random_task = tasks.random_samples(small_fashion, 30, seed=0)
    with pytest.raises(ValueError, match="class task"):
        unlearn("fisher", original, random_task, device="cpu", zero_forgotten_rows=True)
    with pytest.raises(ValueError, match="alpha"):
        unlearn("fisher", original, class_task, device="cpu", alpha=0)


def test_row_zeroing_is_refused_on_a_mixed_linear_model(small_fashion, mixed):
    request = tasks.instances(small_fashion, mixed.user_idx[:20])
    with pytest.raises(ValueError, match="mixed-linear"):
        unlearn("fisher", mixed, request, device="cpu", zero_forgotten_rows=True)
