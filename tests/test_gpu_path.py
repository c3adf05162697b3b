"""The GPU switches: device-resident data, mixed precision, channels_last, REM's mask table on the device.

Their logic is checked on the CPU (the ``meta`` device stands in for a GPU where only placement matters); the tests
marked ``cuda`` run the real path and are skipped on a machine without one, unless ``UNLEARNLIB_REQUIRE_GPU=1``
makes that a failure (see the last test)."""
import gc

import numpy as np
import pytest
import torch

from unlearnlib import data as data_module
from unlearnlib.data import ImageData, resident
from unlearnlib.models import build_model
from unlearnlib.training import Recipe, autocast_dtype, batches, predict_logits, train_model

#: skipped without a CUDA GPU, a failure without one under UNLEARNLIB_REQUIRE_GPU=1 (tests/conftest.py)
cuda = pytest.mark.cuda


def _cifar_like(n: int = 512, seed: int = 0) -> ImageData:
    """Random CIFAR-shaped images whose label is the channel brightened by 75: learnable in an epoch or two."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = torch.randint(0, 181, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    x[torch.arange(n), y] += 75
    return ImageData("synthetic", x, y, x[: n // 2].clone(), y[: n // 2].clone(), ["r", "g", "b"],
                     (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


# --------------------------------------------------------------------------------------------------------------
# On the CPU

def test_a_resident_copy_is_made_once_refreshed_after_a_change_and_freed_with_its_tensor():
    t = torch.arange(12)
    first = resident(t, "meta")
    assert first.device.type == "meta" and first.shape == t.shape
    assert resident(t, "meta") is first  # cached, not copied again
    t.add_(1)  # the host tensor changed in place: the copy would be stale
    assert resident(t, "meta") is not first
    n = len(data_module._RESIDENT)
    del t
    gc.collect()
    assert len(data_module._RESIDENT) == n - 1


def test_no_resident_copy_on_the_cpu_for_big_tensors_or_for_a_tensor_already_there(monkeypatch):
    t = torch.arange(12)
    assert resident(t, "cpu") is None and t not in data_module._RESIDENT
    on_meta = torch.empty(3, device="meta")
    assert resident(on_meta, "meta") is on_meta
    monkeypatch.setattr(data_module, "RESIDENT_MAX_BYTES", 8)
    assert resident(t, "meta") is None


def test_mixed_precision_is_on_for_cuda_only_unless_asked():
    assert autocast_dtype(None, "cpu") is None
    assert autocast_dtype(False, "cpu") is None and autocast_dtype(False, "cuda") is None
    assert autocast_dtype(True, "cpu") == torch.bfloat16  # asked for explicitly: CPU bfloat16 autocast
    with pytest.raises(ValueError, match="amp=False"):
        autocast_dtype(True, "mps")


def test_explicit_mixed_precision_trains_on_the_cpu():
    data = _cifar_like(256)
    model = build_model("mlp", 3, 3, 32, seed=0)
    recipe = Recipe(epochs=1, batch_size=64, lr=3e-3, optimizer="adam", weight_decay=0.0, amp=True)
    train_model(model, data, np.arange(256), recipe, seed=0, device="cpu", progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(predict_logits(model, data, None, device="cpu", amp=True)).all()


def test_the_mask_table_moves_with_the_model_and_stays_out_of_the_state_dict():
    model = build_model("small-cnn-capacity", 10, 1, 28, seed=0)
    model.draw_masks(50, p_mem=0.2, seed=0)
    tables = [m.table.clone() for m in model.masks]
    model.to("meta")
    assert all(m.table.device.type == "meta" for m in model.masks)
    assert not any("table" in k for k in model.state_dict())
    model.draw_masks(50, p_mem=0.2, seed=0)  # drawn on the CPU, kept on the model's device
    assert all(m.table.device.type == "meta" and m.table.shape == t.shape for m, t in zip(model.masks, tables))
    cpu = build_model("small-cnn-capacity", 10, 1, 28, seed=0)
    cpu.draw_masks(50, p_mem=0.2, seed=0)
    assert all(torch.equal(m.table, t) for m, t in zip(cpu.masks, tables))  # same masks wherever drawn


# --------------------------------------------------------------------------------------------------------------
# On CUDA

@cuda
def test_cuda_batches_match_the_cpu_ones_and_come_from_the_resident_copy():
    data = _cifar_like(256)
    idx = np.arange(0, 256, 3)
    for augment, rotation in ((False, 0.0), (True, 0.0), (True, 15.0)):
        kw = dict(shuffle=True, seed=1, augment=augment, rotation=rotation)
        on_cpu = list(batches(data, idx, 32, device="cpu", **kw))
        on_gpu = list(batches(data, idx, 32, device="cuda", **kw))
        for (xc, yc), (xg, yg) in zip(on_cpu, on_gpu):
            assert xg.is_cuda and torch.equal(yc, yg.cpu())
            same = torch.isclose(xc, xg.cpu(), atol=1e-6).float().mean()
            assert same > (0.99 if rotation else 1 - 1e-9)  # a nearest-neighbour tie may round elsewhere
    assert data.x_train in data_module._RESIDENT and data.y_train in data_module._RESIDENT


@cuda
@pytest.mark.parametrize("bf16", [True, False], ids=["bfloat16", "float16-with-scaler"])
def test_cuda_training_with_mixed_precision_learns_and_uses_channels_last(bf16, monkeypatch):
    if not bf16:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    data = _cifar_like(1024)
    model = build_model("small-cnn", 3, 3, 32, seed=0)
    recipe = Recipe(epochs=2, batch_size=128, lr=0.05, schedule="multistep", milestones=(2,), warmup_epochs=1,
                    augment=True, rotation=15.0)
    train_model(model, data, np.arange(1024), recipe, seed=0, device="cuda", progress=False)
    assert torch.backends.cudnn.benchmark
    conv = model.features[0].weight
    assert conv.is_cuda and conv.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    logits = predict_logits(model, data, None, device="cuda")
    assert logits.dtype == torch.float32 and logits.device.type == "cpu" and torch.isfinite(logits).all()
    loss = torch.nn.functional.cross_entropy(logits, data.y_test)
    assert torch.isfinite(loss) and loss < np.log(3)  # better than chance after two epochs


@cuda
def test_cuda_predictions_agree_with_the_cpu_ones():
    data = _cifar_like(512)
    model = build_model("small-cnn", 3, 3, 32, seed=0)
    on_cpu = predict_logits(model, data, None, device="cpu")
    full = predict_logits(model, data, None, device="cuda", amp=False)
    mixed = predict_logits(model, data, None, device="cuda")
    assert full.device.type == "cpu" and mixed.dtype == torch.float32 and not torch.is_inference(mixed)
    assert torch.allclose(full, on_cpu, atol=1e-3, rtol=1e-3)
    assert (mixed.argmax(1) == on_cpu.argmax(1)).float().mean() > 0.9


@cuda
def test_the_mask_table_lives_on_the_gpu_and_a_masked_forward_runs_there():
    model = build_model("small-cnn-capacity", 10, 3, 32, seed=0)
    model.draw_masks(100, p_mem=0.2, seed=0)
    model.cuda()
    assert all(m.table.is_cuda for m in model.masks)
    out = model(torch.zeros(4, 3, 32, 32, device="cuda"), torch.arange(4))
    assert out.is_cuda and out.shape == (4, 10)


# --------------------------------------------------------------------------------------------------------------
# UNLEARNLIB_REQUIRE_GPU=1: no passing by skipping

def test_require_gpu_turns_the_cuda_skip_into_a_failure(tmp_path):
    """A generated ``cuda`` test, run by pytest with this suite's conftest on a machine made to see no GPU
    (``CUDA_VISIBLE_DEVICES=""``): skipped by default, failed with ``UNLEARNLIB_REQUIRE_GPU=1``."""
    import os
    import subprocess
    import sys

    from unlearnlib.config import REPO_ROOT

    (tmp_path / "test_needs_gpu.py").write_text("import pytest\n\n\n@pytest.mark.cuda\ndef test_needs_gpu():\n"
                                                "    pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")

    def outcome(**env):
        base = {k: v for k, v in os.environ.items() if k != "UNLEARNLIB_REQUIRE_GPU"}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
                               "-rs", "-c", str(tmp_path / "pytest.ini"), str(tmp_path / "test_needs_gpu.py")],
                              cwd=REPO_ROOT, env={**base, "CUDA_VISIBLE_DEVICES": "", **env}, capture_output=True,
                              text=True, timeout=300)
        return proc.returncode, proc.stdout + proc.stderr

    code, out = outcome()
    assert code == 0 and "1 skipped" in out and "UNLEARNLIB_REQUIRE_GPU=1 makes this a failure" in out, out
    code, out = outcome(UNLEARNLIB_REQUIRE_GPU="1")
    assert code == 1 and "1 error" in out and "sees none" in out, out  # failed in setup: the run fails
