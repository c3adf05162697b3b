"""Architectures from the registry build for the datasets they are meant for, or refuse with a clear error."""
import pytest
import torch
import torch.nn.functional as F

from unlearnlib.models import build_model


def test_vit_tiny_reads_a_cifar_image_as_an_8x8_grid_of_patches_and_learns():
    model = build_model("vit-tiny", 10, 3, 32, seed=0)
    assert model.patch_embed.num_patches == 64  # 4x4 patches: the 224x224/16 layout would not fit 32x32 inputs
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # it fits a small batch: gradients reach every block


def test_pretrained_vit_tiny_is_refused_with_what_to_do_instead():
    with pytest.raises(ValueError, match="no pretrained weights for small images.*resnet18-cifar"):
        build_model("vit-tiny", 10, 3, 32, pretrained=True)
    with pytest.raises(ValueError, match="multiple of 4"):
        build_model("vit-tiny", 10, 1, 30)


# -- the paper architectures take their base width: the paper's models unchanged, small ones for the paper check ---

#: parameter counts of the paper models at the paper width (10 classes, 3x32x32), measured when widths were added
PAPER_PARAMETERS = {"resnet18-cifar": 11_173_962, "resnet18-cifar-leaky": 11_173_962, "resnet9-capacity": 2_276_224,
                    "vit-tiny": 5_362_762}


def _structure(model):
    return [(name, type(module).__name__) for name, module in model.named_modules()]


@pytest.mark.parametrize("arch", sorted(PAPER_PARAMETERS))
def test_the_paper_models_are_unchanged_by_the_width_parameter(arch):
    from unlearnlib.models import PAPER_WIDTH, count_parameters, with_width

    model = build_model(arch, 10, 3, 32, seed=0)
    assert count_parameters(model) == PAPER_PARAMETERS[arch]
    assert with_width(arch, PAPER_WIDTH) == with_width(arch, None) == arch  # one name for the paper model (and key)
    explicit = build_model(f"{arch}@{PAPER_WIDTH}", 10, 3, 32, seed=0)
    same = zip(model.state_dict().items(), explicit.state_dict().items())
    assert all(k1 == k2 and torch.equal(v1, v2) for (k1, v1), (k2, v2) in same), "the same weights from the seed"


@pytest.mark.parametrize("arch", sorted(PAPER_PARAMETERS))
def test_a_small_width_builds_the_same_architecture_with_fewer_parameters(arch):
    """paper-smoke's models: the same layer names and kinds (every branch, hook and BatchNorm path), a fraction of
    the parameters, the same output shape; it trains (gradients reach every layer) and remembers its width."""
    from unlearnlib.models import count_parameters, fresh_copy

    full, small = build_model(arch, 10, 3, 32, seed=0), build_model(f"{arch}@8", 10, 3, 32, seed=0)
    assert _structure(small) == _structure(full)
    assert count_parameters(small) < count_parameters(full) / 20
    x = torch.randn(4, 3, 32, 32)
    loss = F.cross_entropy(small(x), torch.arange(4))
    loss.backward()
    assert all(p.grad is not None for p in small.parameters() if p.requires_grad)
    assert small.unlearnlib_spec["arch"] == f"{arch}@8"
    assert _structure(fresh_copy(small, seed=1)) == _structure(small)
    assert count_parameters(fresh_copy(small, seed=1)) == count_parameters(small)


def test_the_small_capacity_resnet9_splits_its_capacity_like_the_paper_one():
    """REM's capacity split at width 8: half of every masked layer is extra capacity, discarding it leaves the
    drop-mode outputs unchanged, and example-tied masks gate it."""
    small = build_model("resnet9-capacity@8", 10, 3, 32, seed=0).eval()
    assert [(m.channels, m.keep) for m in small.masks] == [(8, 4), (16, 8), (32, 16), (16, 8)]
    x = torch.randn(3, 3, 32, 32)
    small.draw_masks(3, p_mem=0.5, seed=0)
    with torch.no_grad():
        drop, tied = small(x), small(x, torch.arange(3))
        assert not torch.allclose(drop, tied)
        small.discard_capacity()
        assert torch.allclose(small(x), drop, atol=1e-6)


def test_the_mixed_linear_model_wraps_a_small_resnet18():
    """Mixed-Privacy's cut (layer4 + pooling + fc linearized) and its Jacobian-vector product at width 8."""
    from unlearnlib.methods import mixed_privacy as mp
    from unlearnlib.models import leaky_variant

    arch = leaky_variant("resnet18-cifar@8")
    assert arch == "resnet18-cifar-leaky@8" and leaky_variant("small-cnn") == "small-cnn-leaky"
    core = build_model(arch, 10, 3, 32, seed=0)
    model = mp.MixedLinear(core, core_idx=[0, 1], user_idx=[2, 3]).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), core.eval()(x), atol=1e-5)  # w_user = 0: the core's outputs


def test_a_width_is_refused_where_it_cannot_be_honoured():
    with pytest.raises(ValueError, match="no width parameter"):
        build_model("small-cnn@8", 10, 1, 28)
    with pytest.raises(ValueError, match="only at the paper width"):
        build_model("resnet18-cifar@8", 10, 3, 32, pretrained=True)
    with pytest.raises(ValueError, match="must be even"):
        build_model("resnet18-cifar@7", 10, 3, 32)
    with pytest.raises(ValueError, match="whole number"):
        build_model("resnet18-cifar@x", 10, 3, 32)
