"""Models by name. The number of input channels and classes follows the dataset.

Each model carries ``model.unlearnlib_spec`` (architecture, classes, channels, image size) so that the library can
rebuild a fresh copy (retraining from scratch) and check that a model matches a task before unlearning it.

The paper architectures (``resnet18-cifar``, its ``-leaky`` variant, ``resnet9-capacity``, ``vit-tiny``) take their
base width as a parameter, named in the architecture: ``"resnet18-cifar@8"`` is the CIFAR ResNet-18 with 8 base
channels instead of 64 (every layer scaled by 8/64; the same modules, branches and shapes up to the channel count).
The plain name is the paper width, so every model (and checkpoint key) built before widths existed is unchanged.
The ``paper-smoke`` profile uses a small width (:data:`unlearnlib.profiles.PAPER_SMOKE_WIDTH`) to check the paper
path at a fraction of the FLOPs.
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

#: the paper models' base width (the first stage's channels of the ResNets; ViT-Tiny's embedding is 3x it, 192)
PAPER_WIDTH = 64


def split_arch(arch: str) -> tuple[str, int | None]:
    """``"resnet18-cifar@8"`` -> ``("resnet18-cifar", 8)``; a plain name -> ``(name, None)`` (the paper width)."""
    base, sep, width = arch.partition("@")
    if not sep:
        return arch, None
    if not width.isdigit() or int(width) < 1:
        raise ValueError(f"architecture {arch!r}: the width after '@' must be a whole number >= 1")
    return base, int(width)


def with_width(arch: str, width: int | None) -> str:
    """``arch`` at base width ``width`` (``None`` or :data:`PAPER_WIDTH`: the plain name, the paper model). An
    architecture without a width parameter (:data:`WIDTH_ARCHITECTURES`) is returned unchanged."""
    base, _ = split_arch(arch)
    if base not in WIDTH_ARCHITECTURES:
        return arch
    return base if width is None or int(width) == PAPER_WIDTH else f"{base}@{int(width)}"


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


# --------------------------------------------------------------------------------------------------------------
# Extra capacity (REM, Schoepf et al. 2025): "Capacity 0.5" models

class ExampleTiedMask(nn.Module):
    """Gate the extra channels of one layer: REM's "Capacity 0.5" (after Example-Tied Dropout, Maini et al. 2023).

    Channels ``[0, keep)`` are the generalisation part theta_o1 and always pass. Channels ``[keep, C)`` are the extra
    capacity theta_o2. Without mask ids ("drop" mode: pretraining, test time, every baseline) they are zeroed, with
    no rescaling, so a model trained this way never uses them and their weights stay at their initialisation. With
    mask ids, each example multiplies the extra channels by its own row of ``table`` (one Bernoulli(p_mem) draw per
    channel, broadcast over height and width). ``table`` is drawn by :meth:`CapacityModel.draw_masks`.
    """

    def __init__(self, channels: int, capacity: float = 0.5):
        super().__init__()
        extra = int(round(channels * capacity))
        if not 0 < extra < channels:
            raise ValueError(f"capacity {capacity} leaves no channel on one side of {channels}")
        self.channels, self.keep = channels, channels - extra
        self.register_buffer("drop_gate", (torch.arange(channels) < self.keep).float(), persistent=False)
        self.table: torch.Tensor | None = None  # bool (n_ids, extra); not in the state dict: redrawn from its seed

    def _apply(self, fn, *args, **kwargs):
        """Move ``table`` with the module (``.to(device)``, ``.cuda()``): it is not a buffer (it must stay out of the
        state dict), and a table left on the host would be copied to the device on every forward pass."""
        out = super()._apply(fn, *args, **kwargs)
        if self.table is not None:
            self.table = self.table.to(self.drop_gate.device)
        return out

    def forward(self, x: torch.Tensor, mask_ids: torch.Tensor | None = None) -> torch.Tensor:
        shape = (1, self.channels) + (1,) * (x.dim() - 2)
        if mask_ids is None:
            return x * self.drop_gate.view(shape)
        if self.table is None:
            raise RuntimeError("no example-tied masks drawn yet: call model.draw_masks(n_ids, p_mem, seed) first")
        extra = self.table.to(x.device)[mask_ids.to(x.device)].to(x.dtype)  # no copy: the table follows the module
        gate = torch.cat([torch.ones(len(extra), self.keep, device=x.device, dtype=x.dtype), extra], 1)
        return x * gate.view((len(extra), self.channels) + (1,) * (x.dim() - 2))


class CapacityModel(nn.Module):
    """A classifier whose masked layers carry unused extra channels (theta_o2) next to the trained ones (theta_o1).

    ``model(x)`` runs in "drop" mode (theta_o1 only). ``model(x, mask_ids)`` gates the extra channels with each
    example's mask. Subclasses list their masks in ``self.masks`` and say which parameter entries are theta_o2 in
    :meth:`extra_capacity`.
    """

    masks: nn.ModuleList

    def draw_masks(self, n_ids: int, p_mem: float = 0.2, seed: int = 0) -> None:
        """Draw a fresh per-channel Bernoulli(``p_mem``) mask for mask ids ``0 .. n_ids-1`` in every masked layer.

        A dedicated ``torch.Generator`` seeded by ``seed`` draws them (the global RNG is never touched), so the masks
        are reproducible from the seed. Shape (n_ids, extra channels) per layer: masks are per channel, as in ETD,
        so the table costs n_ids x channels bits rather than the official per-pixel cache. The draw is on the CPU
        (the same masks on every device); each table then lives on its layer's device and moves with the model."""
        if not 0 <= p_mem <= 1:
            raise ValueError(f"p_mem must be in [0, 1], got {p_mem}")
        gen = torch.Generator().manual_seed(int(seed))
        for mask in self.masks:
            table = torch.rand(n_ids, mask.channels - mask.keep, generator=gen) < p_mem
            mask.table = table.to(mask.drop_gate.device)

    def extra_capacity(self) -> dict[str, torch.Tensor]:
        """For every parameter holding theta_o2 entries: a bool tensor of its shape, True on theta_o2."""
        raise NotImplementedError

    @torch.no_grad()
    def discard_capacity(self) -> "CapacityModel":
        """Zero theta_o2 in place (every weight into and out of the extra channels) and forget the masks: the extra
        capacity is gone, not only switched off. theta_o1 is untouched and the drop-mode outputs do not change."""
        params = dict(self.named_parameters())
        for name, where in self.extra_capacity().items():
            params[name][where] = 0.0
        for mask in self.masks:
            mask.table = None
        return self


def _rows(p: torch.Tensor, start: int) -> torch.Tensor:
    """Bool mask of ``p``'s shape selecting output rows ``start:`` (dim 0)."""
    m = torch.zeros_like(p, dtype=torch.bool)
    m[start:] = True
    return m


def _cols(p: torch.Tensor, start: int, repeat: int = 1) -> torch.Tensor:
    """Bool mask selecting input columns (dim 1) from channel ``start`` on; ``repeat`` spatial positions per channel
    (a Linear layer reading a flattened feature map)."""
    m = torch.zeros_like(p, dtype=torch.bool)
    m[:, start * repeat:] = True
    return m


class CapacityCNN(CapacityModel):
    """:class:`SmallCNN` with half of every layer held back as extra capacity (conv1, conv2 and the hidden layer).

    theta_o1 is a CNN half as wide (16-32-64 units); its accuracy on Fashion-MNIST is close to the full small CNN.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28, width: int = 32,
                 hidden: int = 128, capacity: float = 0.5):
        super().__init__()
        self.side = (image_size + 3) // 4
        self.conv1, self.bn1 = nn.Conv2d(in_channels, width, 5, stride=2, padding=2), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width)
        self.fc1 = nn.Linear(2 * width * self.side * self.side, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.masks = nn.ModuleList([ExampleTiedMask(width, capacity), ExampleTiedMask(2 * width, capacity),
                                    ExampleTiedMask(hidden, capacity)])

    def forward(self, x: torch.Tensor, mask_ids: torch.Tensor | None = None) -> torch.Tensor:
        m1, m2, m3 = self.masks
        x = m1(torch.relu(self.bn1(self.conv1(x))), mask_ids)
        x = m2(torch.relu(self.bn2(self.conv2(x))), mask_ids)
        x = m3(torch.relu(self.fc1(x.flatten(1))), mask_ids)
        return self.fc2(x)

    def extra_capacity(self) -> dict[str, torch.Tensor]:
        k1, k2, k3 = (m.keep for m in self.masks)
        out = {}
        for name, k in (("conv1", k1), ("bn1", k1), ("conv2", k2), ("bn2", k2)):
            layer = getattr(self, name)
            out[f"{name}.weight"], out[f"{name}.bias"] = _rows(layer.weight, k), _rows(layer.bias, k)
        out["conv2.weight"] |= _cols(self.conv2.weight, k1)
        out["fc1.weight"] = _rows(self.fc1.weight, k3) | _cols(self.fc1.weight, k2, self.side * self.side)
        out["fc1.bias"] = _rows(self.fc1.bias, k3)
        out["fc2.weight"] = _cols(self.fc2.weight, k3)
        return out


def _conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding), nn.BatchNorm2d(c_out), nn.CELU(0.075))


class CapacityResNet9(CapacityModel):
    """REM's ResNet-9 (Conv-BN-CELU(0.075), 64-128-res128-256-res256-128, adaptive max-pool, bias-free linear) with
    half of the channels after conv1, conv2, res1, conv3, res2 and conv4 held back. As in the official model there
    are four masks: res1 reuses conv2's mask and res2 reuses conv3's. ``width`` scales every layer (w-2w-4w-2w;
    the paper's is 64)."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32, capacity: float = 0.5,
                 width: int = PAPER_WIDTH):
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width
        self.conv1 = _conv_bn(in_channels, w1)
        self.conv2 = _conv_bn(w1, w2, 5, 2, 2)
        self.res1 = nn.Sequential(_conv_bn(w2, w2), _conv_bn(w2, w2))
        self.conv3 = nn.Sequential(_conv_bn(w2, w3), nn.MaxPool2d(2))
        self.res2 = nn.Sequential(_conv_bn(w3, w3), _conv_bn(w3, w3))
        self.conv4 = _conv_bn(w3, w2, 3, 1, 0)
        self.fc = nn.Linear(w2, num_classes, bias=False)
        self.masks = nn.ModuleList([ExampleTiedMask(c, capacity) for c in (w1, w2, w3, w2)])

    def forward(self, x: torch.Tensor, mask_ids: torch.Tensor | None = None) -> torch.Tensor:
        m1, m2, m3, m4 = self.masks
        x = m1(self.conv1(x), mask_ids)
        x = m2(self.conv2(x), mask_ids)
        x = m2(x + self.res1(x), mask_ids)
        x = m3(self.conv3(x), mask_ids)
        x = m3(x + self.res2(x), mask_ids)
        x = m4(self.conv4(x), mask_ids)
        return self.fc(torch.amax(x, dim=(2, 3)))

    def extra_capacity(self) -> dict[str, torch.Tensor]:
        k1, k2, k3, k4 = (m.keep for m in self.masks)
        out: dict[str, torch.Tensor] = {}

        def block(prefix: str, seq: nn.Sequential, k_in: int | None, k_out: int | None) -> None:
            conv, bn = seq[0], seq[1]
            w = torch.zeros_like(conv.weight, dtype=torch.bool)
            if k_in is not None:
                w |= _cols(conv.weight, k_in)
            if k_out is not None:
                w |= _rows(conv.weight, k_out)
                out[f"{prefix}.0.bias"] = _rows(conv.bias, k_out)
                out[f"{prefix}.1.weight"], out[f"{prefix}.1.bias"] = _rows(bn.weight, k_out), _rows(bn.bias, k_out)
            out[f"{prefix}.0.weight"] = w

        block("conv1", self.conv1, None, k1)
        block("conv2", self.conv2, k1, k2)
        block("res1.0", self.res1[0], k2, None)
        block("res1.1", self.res1[1], None, k2)
        block("conv3.0", self.conv3[0], k2, k3)
        block("res2.0", self.res2[0], k3, None)
        block("res2.1", self.res2[1], None, k3)
        block("conv4", self.conv4, k3, k4)
        out["fc.weight"] = _cols(self.fc.weight, k4)
        return out


def _paper_width_only(arch: str, width: int | None, pretrained: bool) -> None:
    if pretrained and width is not None and width != PAPER_WIDTH:
        raise ValueError(f"pretrained {arch!r} weights exist only at the paper width ({PAPER_WIDTH}), not {width}; "
                         f"use pretrained=False or the plain {arch!r}")


def _resnet18_cifar(num_classes: int, in_channels: int, image_size: int, pretrained: bool = False,
                    width: int | None = None) -> nn.Module:
    """timm's ResNet-18 with the CIFAR stem (3x3 stride-1 first convolution, no max-pool), as in the SSD code.
    ``width``: the base channels (stages w-2w-4w-8w; ``None``: the paper's 64)."""
    import timm

    _paper_width_only("resnet18-cifar", width, pretrained)
    sized = {}
    if width is not None:  # timm's plain stem has 64 channels whatever the stages; its deep stem has 2 x stem_width,
        if width % 2:      # and the stem convolution is replaced below: so the stem (bn1, layer1's input) is `width`
            raise ValueError(f"resnet18-cifar's width must be even, got {width}")
        sized = {"channels": (width, 2 * width, 4 * width, 8 * width), "stem_type": "deep", "stem_width": width // 2}
    model = timm.create_model("resnet18", pretrained=pretrained, num_classes=num_classes, in_chans=in_channels,
                              **sized)
    model.conv1 = nn.Conv2d(in_channels, width or PAPER_WIDTH, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def _vit_tiny(num_classes: int, in_channels: int, image_size: int, pretrained: bool = False,
              width: int | None = None) -> nn.Module:
    """timm's ViT-Tiny sized for the dataset: 4x4 patches, so a 32x32 CIFAR image is an 8x8 grid of tokens (the
    224x224/16 layout would not fit it). Trained from scratch only: timm's pretrained ViT-Tiny weights are for
    16x16 patches on 224x224 images, and resampling them to 4x4 patches on 32x32 is not the model they describe.
    ``width``: the embedding is 3 x width (3 heads, 12 blocks, as ViT-Tiny's 192 = 3 x 64)."""
    if pretrained:
        raise ValueError("vit-tiny has no pretrained weights for small images (timm's are for 224x224 inputs with "
                         "16x16 patches); use pretrained=False (4x4 patches, trained from scratch) or a pretrained "
                         "'resnet18-cifar'")
    if image_size % 4:
        raise ValueError(f"vit-tiny uses 4x4 patches; the image size must be a multiple of 4, got {image_size}")
    import timm

    sized = {} if width is None else {"embed_dim": 3 * width}
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=num_classes,
                             in_chans=in_channels, img_size=image_size, patch_size=4, **sized)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "mlp": lambda c, ch, s, pretrained=False: MLP(c, ch, s),
    "mlp-leaky": lambda c, ch, s, pretrained=False: leaky(MLP(c, ch, s)),
    "small-cnn": lambda c, ch, s, pretrained=False: SmallCNN(c, ch, s),
    "small-cnn-leaky": lambda c, ch, s, pretrained=False: SmallCNN(c, ch, s, leaky=True),
    "resnet18-cifar": _resnet18_cifar,
    "resnet18-cifar-leaky": lambda c, ch, s, pretrained=False, width=None: leaky(
        _resnet18_cifar(c, ch, s, pretrained, width)),
    "vit-tiny": _vit_tiny,
    "small-cnn-capacity": lambda c, ch, s, pretrained=False: CapacityCNN(c, ch, s),
    "resnet9-capacity": lambda c, ch, s, pretrained=False, width=None: CapacityResNet9(
        c, ch, s, width=width or PAPER_WIDTH),
}

#: the architectures that take a base width (``"<name>@<width>"``): the paper models
WIDTH_ARCHITECTURES = frozenset({"resnet18-cifar", "resnet18-cifar-leaky", "resnet9-capacity", "vit-tiny"})


def leaky_variant(arch: str) -> str:
    """The Leaky-ReLU twin of ``arch`` at the same width: ``"small-cnn"`` -> ``"small-cnn-leaky"``,
    ``"resnet18-cifar@8"`` -> ``"resnet18-cifar-leaky@8"`` (Mixed-Privacy forgetting's core network)."""
    base, width = split_arch(arch)
    name = base if base.endswith("-leaky") else f"{base}-leaky"
    if name not in ARCHITECTURES:
        raise ValueError(f"{arch!r} has no Leaky-ReLU variant; the ones that do: "
                         f"{', '.join(a[:-len('-leaky')] for a in ARCHITECTURES if a.endswith('-leaky'))}")
    return with_width(name, width)


def build_model(arch: str, num_classes: int, in_channels: int, image_size: int, *, pretrained: bool = False,
                seed: int | None = None) -> nn.Module:
    """A freshly initialised model (seeded when ``seed`` is given) that remembers how it was built.

    ``arch`` may name a base width, ``"resnet18-cifar@8"``, for the architectures in :data:`WIDTH_ARCHITECTURES`."""
    base, width = split_arch(arch)
    if base not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}")
    if width is not None and base not in WIDTH_ARCHITECTURES:
        raise ValueError(f"architecture {base!r} has no width parameter ({arch!r}); the ones that do: "
                         f"{', '.join(sorted(WIDTH_ARCHITECTURES))}")
    sized = {} if width is None or width == PAPER_WIDTH else {"width": width}
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model = ARCHITECTURES[base](num_classes, in_channels, image_size, pretrained=pretrained, **sized)
    except ValueError:  # a request the architecture cannot serve: its own message says what to do
        raise
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


class MaskedLogits(nn.Module):
    """A model whose logits for ``classes`` are replaced by ``value`` (a large negative number), so that it never
    predicts them; every other logit is the wrapped model's, bit for bit. No training: the trivial baseline for
    forgetting a class (``mask_classes``) or never predicting a trigger's target (``suppress_target``)."""

    def __init__(self, model: nn.Module, classes, num_classes: int, value: float = -1e4):
        super().__init__()
        self.model = model
        mask = torch.zeros(num_classes, dtype=torch.bool)
        mask[list(classes)] = True
        self.register_buffer("mask", mask)
        self.value = value
        if hasattr(model, "unlearnlib_spec"):
            self.unlearnlib_spec = dict(model.unlearnlib_spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return logits.masked_fill(self.mask.to(logits.device), self.value)


class InstanceFilter(nn.Module):
    """A model that refuses to recognise a stored set of inputs: for an input equal (to ``atol``) to one of
    ``x_stored``, the logit of that input's label ``y_stored`` is replaced by ``value``, so the runner-up class wins;
    every other input gets the wrapped model's logits, bit for bit. No training: the trivial baseline for an
    instance request whose goal is that the named images are misclassified (``refuse_instances``). The weights
    still hold everything they learnt from those images, and a copy that differs in one pixel is recognised again."""

    def __init__(self, model: nn.Module, x_stored: torch.Tensor, y_stored: torch.Tensor, value: float = -1e4,
                 atol: float = 1e-6):
        super().__init__()
        if len(x_stored) == 0:
            raise ValueError("InstanceFilter needs at least one input to refuse")
        self.model = model
        self.register_buffer("x_stored", x_stored.detach().flatten(1).clone())
        self.register_buffer("y_stored", y_stored.detach().long().clone())
        self.value, self.atol = value, atol
        if hasattr(model, "unlearnlib_spec"):
            self.unlearnlib_spec = dict(model.unlearnlib_spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        stored = self.x_stored.to(x.device)
        # (batch, stored): the largest pixel difference, without materialising a (batch, stored, pixels) tensor
        gap = torch.cdist(x.flatten(1).to(stored.dtype), stored, p=float("inf"))
        hit, which = (gap <= self.atol).max(1)
        if not hit.any():
            return logits
        rows = hit.nonzero().flatten()
        logits = logits.clone()
        logits[rows, self.y_stored.to(x.device)[which[rows]]] = self.value
        return logits


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
