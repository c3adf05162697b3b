import numpy as np
import pytest
import torch

from unlearnlib.models import build_model, check_compatible, model_for
from unlearnlib.training import (Recipe, accuracy, cached_model, make_optimizer, train_model, train_or_load)

FAST = Recipe(epochs=1, batch_size=128, lr=3e-3, optimizer="adam", weight_decay=0.0, schedule="onecycle")


def _trained_mlp(data, seed):
    model = model_for(data, "mlp", seed=seed)
    return train_model(model, data, np.arange(len(data.y_train)), FAST, seed=seed, device="cpu", progress=False)


def test_training_learns_real_data(small_fashion):
    model = _trained_mlp(small_fashion, 0)
    assert accuracy(model, small_fashion, device="cpu") > 0.6  # ten classes: chance is 0.1


def test_same_seed_gives_identical_models_and_another_seed_does_not(small_fashion):
    a, b, c = (_trained_mlp(small_fashion, s) for s in (0, 0, 1))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.net[1].weight, c.net[1].weight)


def test_cache_miss_then_hit_keeps_weights_and_training_time(tmp_path, small_fashion):
    calls = []
    spec = {"model": build_model("mlp", 10, 1, 28).unlearnlib_spec, "what": "test"}

    def build():
        calls.append(1)
        return _trained_mlp(small_fashion, 0)

    first = cached_model(spec, build, root=tmp_path, label="m")
    second = cached_model(spec, build, root=tmp_path, label="m")
    assert len(calls) == 1 and not first.cached and second.cached
    assert second.train_seconds == pytest.approx(first.train_seconds)
    assert all(torch.equal(x, y) for x, y in zip(first.model.state_dict().values(),
                                                 second.model.state_dict().values()))
    assert not list(tmp_path.glob("*.tmp"))
    other = cached_model({**spec, "what": "other"}, build, root=tmp_path, label="m")
    assert len(calls) == 2 and other.key != first.key


def test_corrupt_checkpoint_is_rebuilt_with_a_warning(tmp_path, small_fashion):
    spec = {"model": build_model("mlp", 10, 1, 28).unlearnlib_spec}
    first = cached_model(spec, lambda: _trained_mlp(small_fashion, 0), root=tmp_path, label="m")
    path = next(tmp_path.glob("m-*.pt"))
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        again = cached_model(spec, lambda: _trained_mlp(small_fashion, 0), root=tmp_path, label="m")
    assert not again.cached and again.key == first.key
    assert cached_model(spec, lambda: None, root=tmp_path, label="m").cached


def test_train_or_load_keys_on_the_training_indices(tmp_path, small_fashion):
    idx = np.arange(1000)
    a = train_or_load(small_fashion, idx, "mlp", FAST, seed=0, role="x", device="cpu", progress=False, root=tmp_path)
    b = train_or_load(small_fashion, idx[::-1], "mlp", FAST, seed=0, role="y", device="cpu", progress=False,
                      root=tmp_path)
    c = train_or_load(small_fashion, idx[:900], "mlp", FAST, seed=0, role="x", device="cpu", progress=False,
                      root=tmp_path)
    assert a.key == b.key and b.cached and c.key != a.key and not c.cached


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "multistep", "constant"])
def test_every_schedule_builds(schedule):
    model = build_model("mlp", 10, 1, 28)
    opt, sched = make_optimizer(model, Recipe(epochs=4, schedule=schedule, milestones=(2,), warmup_epochs=1), 40)
    for _ in range(40):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] >= 0


def test_model_and_data_mismatch_is_a_clear_error(small_fashion):
    cifar_shaped = build_model("small-cnn", 10, 3, 32)
    with pytest.raises(ValueError, match="does not match"):
        check_compatible(cifar_shaped, small_fashion)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet-1000", 10, 1, 28)


@pytest.mark.parametrize("arch", ["resnet18-cifar", "vit-tiny"])
def test_timm_models_follow_the_dataset_shape(arch):
    model = build_model(arch, 20, 3, 32).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 20)
    gray = build_model(arch, 10, 1, 32).eval()
    with torch.no_grad():
        assert gray(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
