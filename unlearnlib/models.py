"""Models by name. The number of input channels and classes follows the dataset.

Each model carries ``model.unlearnlib_spec`` (architecture, classes, channels, image size) so that the library can
rebuild a fresh copy (retraining from scratch) and check that a model matches a task before unlearning it.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn


#: negative slope of the Leaky-ReLU variants ("-leaky" architectures). Mixed-Privacy forgetting linearizes the
#: network, and a ReLU whose input is negative has a zero derivative there, which would freeze the unit in the
#: linearized model (LQF's argument for Leaky-ReLU); 0.1 is the slope of the spec's toy check and of UCR's code.
LEAKY_SLOPE = 0.1


def leaky(model: nn.Module) -> nn.Module:
    """Replace every ``nn.ReLU`` in ``model`` (in place, recursively) by ``nn.LeakyReLU(LEAKY_SLOPE)``."""
    for name, child in model.named_children():
        if isinstance(child, nn.ReLU):
            setattr(model, name, nn.LeakyReLU(LEAKY_SLOPE, inplace=child.inplace))
        else:
            leaky(child)
    return model


class SmallCNN(nn.Module):
    """A two-layer strided CNN with BatchNorm: about 0.4 M parameters, ~13 s per Fashion-MNIST epoch on 2 cores.

    Strided convolutions instead of max-pooling halve the CPU cost at equal accuracy (>= 91 % test on
    Fashion-MNIST). BatchNorm is kept on purpose: several methods (e.g. SSD) treat its affine parameters specially.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28, width: int = 32,
                 hidden: int = 128, leaky: bool = False):
        super().__init__()
        side = (image_size + 3) // 4
        act = (lambda: nn.LeakyReLU(LEAKY_SLOPE)) if leaky else nn.ReLU
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, stride=2, padding=2), nn.BatchNorm2d(width), act(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), act(),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(2 * width * side * side, hidden), act(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(nn.Module):
    """A one-hidden-layer perceptron: the cheapest model, used by unit tests."""

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _resnet18_cifar(num_classes: int, in_channels: int, image_size: int, pretrained: bool = False) -> nn.Module:
    """timm's ResNet-18 with the CIFAR stem (3x3 stride-1 first convolution, no max-pool), as in the SSD code."""
    import timm

    model = timm.create_model("resnet18", pretrained=pretrained, num_classes=num_classes, in_chans=in_channels)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def _vit_tiny(num_classes: int, in_channels: int, image_size: int, pretrained: bool = False) -> nn.Module:
    """timm's ViT-Tiny; from scratch it uses 4x4 patches on 32x32 images, pretrained it keeps 16x16 on 224x224."""
    import timm

    if pretrained:
        return timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=num_classes,
                                 in_chans=in_channels)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=num_classes,
                             in_chans=in_channels, img_size=image_size, patch_size=4)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "mlp": lambda c, ch, s, pretrained=False: MLP(c, ch, s),
    "mlp-leaky": lambda c, ch, s, pretrained=False: leaky(MLP(c, ch, s)),
    "small-cnn": lambda c, ch, s, pretrained=False: SmallCNN(c, ch, s),
    "small-cnn-leaky": lambda c, ch, s, pretrained=False: SmallCNN(c, ch, s, leaky=True),
    "resnet18-cifar": _resnet18_cifar,
    "resnet18-cifar-leaky": lambda c, ch, s, pretrained=False: leaky(_resnet18_cifar(c, ch, s, pretrained)),
    "vit-tiny": _vit_tiny,
}


def build_model(arch: str, num_classes: int, in_channels: int, image_size: int, *, pretrained: bool = False,
                seed: int | None = None) -> nn.Module:
    """A freshly initialised model (seeded when ``seed`` is given) that remembers how it was built."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}")
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model = ARCHITECTURES[arch](num_classes, in_channels, image_size, pretrained=pretrained)
    except Exception as e:
        if pretrained:
            raise RuntimeError(f"could not fetch pretrained weights for {arch!r} ({e}); they need a network or a "
                               f"populated Hugging Face cache") from e
        raise
    model.unlearnlib_spec = {"arch": arch, "num_classes": num_classes, "in_channels": in_channels,
                             "image_size": image_size, "pretrained": pretrained}
    return model


def model_for(data, arch: str, *, seed: int | None = None, pretrained: bool = False) -> nn.Module:
    """A model shaped for ``data`` (an :class:`~unlearnlib.data.ImageData`)."""
    return build_model(arch, data.num_classes, data.in_channels, data.image_size, pretrained=pretrained, seed=seed)


def fresh_copy(model: nn.Module, *, seed: int | None = None) -> nn.Module:
    """A newly initialised model of the same architecture (every layer re-initialised, not only the last one)."""
    spec = getattr(model, "unlearnlib_spec", None)
    if spec is None:
        new = copy.deepcopy(model)
        if seed is not None:
            torch.manual_seed(seed)
        for module in new.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        return new
    return build_model(spec["arch"], spec["num_classes"], spec["in_channels"], spec["image_size"],
                       pretrained=spec.get("pretrained", False), seed=seed)


def check_compatible(model: nn.Module, data) -> None:
    """Raise a clear error when ``model`` cannot serve ``data`` (wrong number of classes, channels or size)."""
    spec = getattr(model, "unlearnlib_spec", None)
    want = {"num_classes": data.num_classes, "in_channels": data.in_channels, "image_size": data.image_size}
    if spec is not None:
        bad = {k: (spec[k], v) for k, v in want.items() if spec.get(k) != v}
        if bad:
            detail = "; ".join(f"{k}: model {m}, data {d}" for k, (m, d) in bad.items())
            raise ValueError(f"model ({spec['arch']}) does not match dataset {data.name!r} ({detail}). Build the "
                             f"model with unlearnlib.models.model_for(data, arch) or load the task it was trained on.")
        return
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(data.normalize(data.x_test[:2].to(device)))
    model.train(was_training)
    if out.shape[-1] != data.num_classes:
        raise ValueError(f"model outputs {out.shape[-1]} classes but dataset {data.name!r} has {data.num_classes}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
