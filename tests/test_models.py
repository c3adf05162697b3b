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
