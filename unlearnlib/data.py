"""Datasets by name, held in memory as uint8 tensors for fast CPU training.

Every dataset comes from the stock torchvision loader (so Colab downloads it as usual). Offline, the loaders read
the data root (``$UNLEARNLIB_DATA`` or ``<repo>/data``); see ``data/README.md``. CIFAR-10 falls back to the JPEG
re-encoding ``cifar10-jpg.zip`` when the official files are absent; the variant is recorded in every result.
"""
from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.utils.weak

from . import _io
from .config import DATA_ENV, data_root

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
MNIST_CLASSES = [str(i) for i in range(10)]
CIFAR20_CLASSES = ["aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
                   "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
                   "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
                   "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
                   "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2"]

#: Our Fashion-MNIST superclass grouping for sub-class forgetting (the CIFAR-20 idea on a CPU-sized dataset).
#: Every fine class belongs to exactly one superclass; the model is trained on the superclass label.
FASHION_SUPERCLASSES: dict[str, list[str]] = {
    "tops": ["T-shirt/top", "Pullover", "Coat", "Shirt"],
    "bottoms-and-dresses": ["Trouser", "Dress"],
    "footwear": ["Sandal", "Sneaker", "Ankle boot"],
    "bags": ["Bag"],
}


class DatasetNotAvailableError(FileNotFoundError):
    """A dataset is neither in the data root nor downloadable; the message says how to provide it."""


@dataclass
class ImageData:
    """A labelled image dataset in memory.

    Images are uint8 tensors of shape (N, C, H, W); labels are int64. ``fine_*`` hold the fine labels when the
    training labels are superclasses (CIFAR-20, ``fashion-mnist-super``), else ``None``. ``val_idx`` is the fixed
    validation split (see :func:`validation_split`), carved from the training split; forget tasks build their
    forget and retain sets from the rest.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    variant: str = "torchvision"
    fine_train: torch.Tensor | None = None
    fine_test: torch.Tensor | None = None
    fine_classes: list[str] | None = None
    spec: dict = field(default_factory=dict)
    #: the validation split: training-split indices that no original or retrain model trains on and that every
    #: selection (hyperparameters, early stopping, a method's own model choice) reads instead of the test split
    val_idx: np.ndarray | None = None
    #: a backdoor's training images (a bool mask over the training split) and its patch size, set by
    #: :func:`unlearnlib.tasks.corrupted`: augmentation stamps the patch again after crop and flip, as the official
    #: REM code does, so that it stays in the corner. ``None`` for every other dataset
    trigger: dict | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def train_idx(self) -> np.ndarray:
        """The training indices outside the validation split: what original and retrain models may train on."""
        everything = np.arange(len(self.y_train))
        return everything if self.val_idx is None else np.setdiff1d(everything, self.val_idx)

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of ``"train"`` or ``"test"``."""
        if split == "train":
            return self.x_train, self.y_train
        if split == "test":
            return self.x_test, self.y_test
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel values in [0, 255] (uint8, or float after augmentation) -> float32 tensors standardised with the
        dataset's mean and std, on x's device. ``x`` itself is never modified.

        The mean and std tensors are built once per device (:func:`_moments`) rather than on every call: on a GPU
        each rebuild is a host-to-device copy per batch. The arithmetic is the same as ever, bit for bit."""
        mean, std = _moments(self.mean, self.std, x.device)
        return (x.float() / 255.0 - mean) / std

    def class_index(self, name_or_index: int | str, *, fine: bool = False) -> int:
        """Index of a class given by index or name; a clear error lists the valid names otherwise."""
        names = self.fine_classes if fine else self.classes
        kind = "fine class" if fine else "class"
        if names is None:
            raise ValueError(f"dataset {self.name!r} has no fine labels; sub-class tasks need a superclass dataset "
                             f"such as 'cifar20' or 'fashion-mnist-super'")
        if isinstance(name_or_index, (int, np.integer)) and not isinstance(name_or_index, bool):
            if 0 <= int(name_or_index) < len(names):
                return int(name_or_index)
            raise ValueError(f"unknown {kind} {name_or_index} for {self.name!r}: valid indices are 0..{len(names) - 1}")
        if isinstance(name_or_index, str) and name_or_index in names:
            return names.index(name_or_index)
        raise ValueError(f"unknown {kind} {name_or_index!r} for {self.name!r}; valid names: {', '.join(names)}")

    def fine_classes_in(self, superclass: int | str) -> list[str]:
        """The fine classes whose images carry the label ``superclass`` (a dataset with fine labels only): the
        candidates of a sub-class request inside it."""
        sup = self.class_index(superclass)
        if self.fine_train is None:
            raise ValueError(f"dataset {self.name!r} has no fine labels; use a superclass dataset such as "
                             f"'cifar20' or 'fashion-mnist-super'")
        inside = torch.unique(self.fine_train[self.y_train == sup]).tolist()
        return [self.fine_classes[i] for i in sorted(inside)]

    def with_train(self, x_train: torch.Tensor, y_train: torch.Tensor, **spec_extra) -> "ImageData":
        """A copy whose training images/labels are replaced (corrupted-data tasks); the spec records why. The copy has
        no :attr:`trigger` (it belonged to the old images)."""
        return replace(self, x_train=x_train, y_train=y_train, spec={**self.spec, **spec_extra}, trigger=None)

    def fingerprint(self) -> str:
        """A short hash of the labels and a sample of pixels: two ImageData with equal fingerprints hold the same
        data for every practical purpose (used in cache keys and to check a saved task against its dataset)."""
        import hashlib

        h = hashlib.sha256()
        for t in (self.y_train, self.y_test):
            h.update(t.numpy().astype(np.int64).tobytes())
        for t in (self.x_train, self.x_test):
            h.update(t.flatten(1)[:: max(1, len(t) // 512)].numpy().tobytes())
            h.update(str(tuple(t.shape)).encode())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:  # the default dataclass repr would print whole tensors
        return (f"ImageData({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
                f"classes={self.num_classes}, shape={tuple(self.x_train.shape[1:])}, variant={self.variant!r})")


_MOMENTS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _moments(mean: tuple[float, ...], std: tuple[float, ...],
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The (1, C, 1, 1) mean and std tensors of a dataset on ``device``, built once. Keyed by the values (tuples,
    so immutable) and the device, so two datasets with the same statistics share them and nothing goes stale."""
    key = (tuple(mean), tuple(std), torch.device(device))
    if key not in _MOMENTS:
        _MOMENTS[key] = (torch.tensor(mean, device=device).view(1, -1, 1, 1),
                         torch.tensor(std, device=device).view(1, -1, 1, 1))
    return _MOMENTS[key]


#: device copies of dataset tensors, keyed by the identity of the host tensor: an entry disappears with its tensor
_RESIDENT: "torch.utils.weak.WeakIdKeyDictionary" = torch.utils.weak.WeakIdKeyDictionary()
#: the largest tensor :func:`resident` keeps a device copy of (CIFAR's 50,000 training images take 150 MB)
RESIDENT_MAX_BYTES = 2 * 2**30


def resident(t: torch.Tensor, device: str | torch.device) -> torch.Tensor | None:
    """A copy of ``t`` kept on ``device`` for as long as ``t`` lives, so that batches are indexed there instead of
    being gathered on the host and copied over one by one (``t`` itself when it is already there). ``None`` where
    no copy is kept: on the CPU, where batches are gathered as they always were, and for tensors above
    :data:`RESIDENT_MAX_BYTES`.

    The copy is made again when ``t`` was modified in place since (its version counter moved), so it never serves
    stale pixels. ``t`` is the key, by identity: the copy is freed when ``t`` is."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # one copy whether asked for "cuda" or "cuda:0"
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cpu" or t.numel() * t.element_size() > RESIDENT_MAX_BYTES:
        return None
    if t.device == device:
        return t
    copies = _RESIDENT.setdefault(t, {})
    version, copy = copies.get(device, (None, None))
    if version != t._version:
        copy = t.to(device)
        copies[device] = (t._version, copy)
    return copy


# --------------------------------------------------------------------------------------------------------------
# Loaders

def _missing(name: str, root: Path, how: str, cause: BaseException | None = None) -> DatasetNotAvailableError:
    msg = (f"dataset {name!r} is not in {root} and could not be downloaded"
           + (f" ({type(cause).__name__}: {cause})" if cause else "") +
           f". {how} You can point ${DATA_ENV} at another folder that holds it.")
    return DatasetNotAvailableError(msg)


def _torchvision(cls: Callable, name: str, root: Path, download: bool, how: str, **kw):
    """(train, test) torchvision datasets: read the data root first, then try the stock download."""
    try:
        return cls(str(root), train=True, download=False, **kw), cls(str(root), train=False, download=False, **kw)
    except (RuntimeError, FileNotFoundError, OSError):
        pass
    if not download:
        raise _missing(name, root, how)
    try:  # torchvision skips the network when archives with the right md5 are already in root
        return cls(str(root), train=True, download=True, **kw), cls(str(root), train=False, download=True, **kw)
    except Exception as e:  # urllib errors, RuntimeError("Error downloading ..."), md5 mismatches
        raise _missing(name, root, how, e) from e


def _mnist_like(cls_name: str, name: str, classes: list[str], mean: float, std: float, folder: str):
    def load(root: Path, download: bool) -> ImageData:
        import torchvision

        how = (f"Copy the four original .gz files into {root / folder / 'raw'} (offline copies: "
               f"../shared/data/{folder}) or run once with a network.")
        tr, te = _torchvision(getattr(torchvision.datasets, cls_name), name, root, download, how)
        return ImageData(name, tr.data.unsqueeze(1).contiguous(), tr.targets.long(), te.data.unsqueeze(1).contiguous(),
                         te.targets.long(), classes, (mean,), (std,))
    return load


_load_mnist = _mnist_like("MNIST", "mnist", MNIST_CLASSES, 0.1307, 0.3081, "MNIST")
_load_fashion = _mnist_like("FashionMNIST", "fashion-mnist", FASHION_CLASSES, 0.2860, 0.3530, "FashionMNIST")


def _load_fashion_super(root: Path, download: bool) -> ImageData:
    base = _load_fashion(root, download)
    fine_to_super = torch.empty(10, dtype=torch.long)
    for s, fines in enumerate(FASHION_SUPERCLASSES.values()):
        for f in fines:
            fine_to_super[FASHION_CLASSES.index(f)] = s
    return replace(base, name="fashion-mnist-super", y_train=fine_to_super[base.y_train],
                   y_test=fine_to_super[base.y_test], classes=list(FASHION_SUPERCLASSES),
                   fine_train=base.y_train, fine_test=base.y_test, fine_classes=list(FASHION_CLASSES))


_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_CIFAR100_MEAN, _CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
_warned_jpeg = False


def _hwc_to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def _load_cifar10(root: Path, download: bool) -> ImageData:
    import torchvision

    official = (root / "cifar-10-batches-py").exists()
    zip_path = root / "cifar10-jpg.zip"
    if not official and (zip_path.exists() or (root / "cifar10-jpg.npz").exists()):
        return _load_cifar10_jpeg(root)
    how = (f"Put torchvision's cifar-10-python.tar.gz in {root}, or the offline JPEG copy cifar10-jpg.zip "
           f"(../shared/data/cifar10-jpg.zip) in {root}.")
    tr, te = _torchvision(torchvision.datasets.CIFAR10, "cifar10", root, download, how)
    return ImageData("cifar10", _hwc_to_tensor(tr.data), torch.tensor(tr.targets), _hwc_to_tensor(te.data),
                     torch.tensor(te.targets), CIFAR10_CLASSES, _CIFAR10_MEAN, _CIFAR10_STD)


def _load_cifar10_jpeg(root: Path) -> ImageData:
    """CIFAR-10 from the JPEG (q75) re-encoding, in torchvision's original sample order.

    Sample i with label l is the r-th sample of class l among samples 0..i-1 and is stored as
    ``cifar10-jpg/<split>/<class>/<r:04d>.jpg``. Decoding 60,000 JPEGs takes a while, so the decoded arrays are
    cached once as ``cifar10-jpg.npz`` in the data root.
    """
    global _warned_jpeg
    if not _warned_jpeg:
        warnings.warn("cifar10: official files absent, using the JPEG q75 re-encoding (cifar10-jpg.zip); "
                      "accuracies are a little below those on the original images", stacklevel=3)
        _warned_jpeg = True
    cached = root / "cifar10-jpg.npz"
    if cached.exists():
        try:
            with np.load(cached) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception:
            warnings.warn(f"{cached} is unreadable; decoding the JPEGs again")
            arrays = None
    else:
        arrays = None
    if arrays is None:
        arrays = _decode_cifar10_zip(root / "cifar10-jpg.zip")
        _io.atomic_write(cached, lambda f: np.savez(f, **arrays))
    return ImageData("cifar10", _hwc_to_tensor(arrays["x_train"]), torch.from_numpy(arrays["y_train"]).long(),
                     _hwc_to_tensor(arrays["x_test"]), torch.from_numpy(arrays["y_test"]).long(), CIFAR10_CLASSES,
                     _CIFAR10_MEAN, _CIFAR10_STD, variant="cifar10-jpg-q75")


def _decode_cifar10_zip(zip_path: Path) -> dict[str, np.ndarray]:
    from PIL import Image
    from ._progress import tqdm

    out = {}
    with zipfile.ZipFile(zip_path) as z:
        with z.open("cifar10-jpg/original_order_labels.npz") as f:
            labels = np.load(io.BytesIO(f.read()))
        for split in ("train", "test"):
            y = labels[f"{split}_labels"].astype(np.int64)
            seen = np.zeros(10, dtype=np.int64)
            x = np.empty((len(y), 32, 32, 3), dtype=np.uint8)
            for i, label in enumerate(tqdm(y, desc=f"decoding CIFAR-10 JPEG {split}", leave=False)):
                name = f"cifar10-jpg/{split}/{CIFAR10_CLASSES[label]}/{seen[label]:04d}.jpg"
                seen[label] += 1
                with z.open(name) as f:
                    x[i] = np.asarray(Image.open(f).convert("RGB"))
            out[f"x_{split}"], out[f"y_{split}"] = x, y
    return out


#: A file that marks a folder in CIFAR-100's on-disk format as a generated loader fixture (tests only): its
#: pickles are read without torchvision's md5 check, and every result made from it records the variant below
LOADER_FIXTURE_MARK = "UNLEARNLIB_LOADER_FIXTURE"
LOADER_FIXTURE_VARIANT = "loader-fixture (generated images, not CIFAR-100)"


class _PickledCifar100:
    """The fields of ``torchvision.datasets.CIFAR100`` that the loader reads, from the pickles of a folder marked
    as a loader fixture (``LOADER_FIXTURE_MARK``): torchvision refuses it, since its md5 is not the official one."""

    base_folder = "cifar-100-python"

    def __init__(self, root: Path, train: bool):
        self.root = str(root)
        with open(root / self.base_folder / ("train" if train else "test"), "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        with open(root / self.base_folder / "meta", "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")["fine_label_names"]
        self.data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.targets = list(entry["fine_labels"])


def _load_cifar100(root: Path, download: bool, coarse: bool) -> ImageData:
    import torchvision

    how = (f"Put torchvision's cifar-100-python.tar.gz in {root} (CIFAR-100 has no offline copy here; "
           f"use a machine with a network, e.g. Colab).")
    name = "cifar20" if coarse else "cifar100"
    variant = "torchvision"
    if (root / _PickledCifar100.base_folder / LOADER_FIXTURE_MARK).exists():
        warnings.warn(f"{name}: {root / _PickledCifar100.base_folder} is a generated loader fixture, not CIFAR-100; "
                      f"its numbers mean nothing", stacklevel=3)
        tr, te, variant = _PickledCifar100(root, True), _PickledCifar100(root, False), LOADER_FIXTURE_VARIANT
    else:
        tr, te = _torchvision(torchvision.datasets.CIFAR100, name, root, download, how)
    fine_names = list(tr.classes)
    fine_tr, fine_te = torch.tensor(tr.targets), torch.tensor(te.targets)
    if not coarse:
        return ImageData(name, _hwc_to_tensor(tr.data), fine_tr, _hwc_to_tensor(te.data), fine_te, fine_names,
                         _CIFAR100_MEAN, _CIFAR100_STD, variant=variant)
    coarse_labels = []
    for split in ("train", "test"):  # torchvision keeps only the fine labels; the pickles hold both
        with open(Path(tr.root) / tr.base_folder / split, "rb") as f:
            coarse_labels.append(torch.tensor(pickle.load(f, encoding="latin1")["coarse_labels"]))
    return ImageData(name, _hwc_to_tensor(tr.data), coarse_labels[0], _hwc_to_tensor(te.data), coarse_labels[1],
                     CIFAR20_CLASSES, _CIFAR100_MEAN, _CIFAR100_STD, variant=variant, fine_train=fine_tr,
                     fine_test=fine_te, fine_classes=fine_names)


DATASETS: dict[str, Callable[[Path, bool], ImageData]] = {
    "mnist": _load_mnist,
    "fashion-mnist": _load_fashion,
    "fashion-mnist-super": _load_fashion_super,
    "cifar10": _load_cifar10,
    "cifar100": lambda root, download: _load_cifar100(root, download, coarse=False),
    "cifar20": lambda root, download: _load_cifar100(root, download, coarse=True),
}

_MEMORY: dict[tuple, ImageData] = {}


def load_dataset(name: str, *, root: str | Path | None = None, download: bool = True,
                 train_size: int | None = None, test_size: int | None = None, subset_seed: int = 0) -> ImageData:
    """Load a dataset by name (see ``DATASETS``), optionally a class-stratified subset of it.

    ``train_size``/``test_size`` pick a fixed (by ``subset_seed``) class-balanced subset; the smoke profile uses
    them, and the subset keeps the validation samples of the full split that it contains. The validation split
    (``data.val_idx``) is read from, or the first time written to, ``<root>/splits/`` (:func:`validation_split`).
    Loaded datasets are memoised per process, so chapters can call this freely.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    root = Path(root) if root is not None else data_root()
    key = (name, str(root.resolve()), train_size, test_size, subset_seed)
    if key not in _MEMORY:
        full_key = (name, str(root.resolve()), None, None, 0)
        if full_key not in _MEMORY:
            root.mkdir(parents=True, exist_ok=True)
            data = DATASETS[name](root, download)
            data.spec = {"name": name, "variant": data.variant}
            data.val_idx = validation_split(data, root=root)
            _MEMORY[full_key] = data
        data = _MEMORY[full_key]
        if train_size is not None or test_size is not None:
            data = _subset(data, train_size, test_size, subset_seed)
        _MEMORY[key] = data
    return _MEMORY[key]


def _stratified(y: torch.Tensor, n: int | None, seed: int) -> np.ndarray | None:
    if n is None or n >= len(y):
        return None
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    rng = np.random.default_rng(seed)
    y = y.numpy()
    classes = np.unique(y)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    take = [p[: int(round(n * len(p) / len(y)))] for p in per_class]
    return np.sort(np.concatenate(take))


def _subset(data: ImageData, train_size: int | None, test_size: int | None, seed: int) -> ImageData:
    tr, te = _stratified(data.y_train, train_size, seed), _stratified(data.y_test, test_size, seed + 1)

    def pick(t, idx):
        return t if (t is None or idx is None) else t[torch.from_numpy(idx)]

    val_idx = data.val_idx
    if val_idx is not None and tr is not None:  # the subset keeps the full split's validation samples it contains
        val_idx = np.flatnonzero(np.isin(tr, val_idx))
    return replace(data, x_train=pick(data.x_train, tr), y_train=pick(data.y_train, tr),
                   fine_train=pick(data.fine_train, tr), x_test=pick(data.x_test, te), y_test=pick(data.y_test, te),
                   fine_test=pick(data.fine_test, te), val_idx=val_idx,
                   spec={**data.spec, "train_size": train_size, "test_size": test_size, "subset_seed": seed})


# --------------------------------------------------------------------------------------------------------------
# The validation split

#: Datasets that share their images, and so their validation split: the file is named after the base.
_SPLIT_BASE = {"fashion-mnist-super": "fashion-mnist", "cifar20": "cifar100"}
VALIDATION_SIZE = 5000
VALIDATION_SEED = 7919  # not 0: the stratified subsets (smoke profile) draw with seed 0 the same way


def validation_file(name: str, root: str | Path | None = None) -> Path:
    """Where the validation split of dataset ``name`` is kept: ``<data root>/splits/<base>-validation.json``."""
    root = Path(root) if root is not None else data_root()
    return root / "splits" / f"{_SPLIT_BASE.get(name, name)}-validation.json"


def _label_source(data: ImageData) -> np.ndarray:
    """The labels a validation split is stratified by: the fine labels where a dataset has them, so that datasets
    sharing their images (Fashion-MNIST and its superclass version, CIFAR-100 and CIFAR-20) share one split."""
    return (data.fine_train if data.fine_train is not None else data.y_train).numpy().astype(np.int64)


def carve_validation(labels: np.ndarray, size: int = VALIDATION_SIZE, seed: int = VALIDATION_SEED) -> np.ndarray:
    """A class-stratified validation split of ``size`` training indices (each class in proportion to its share,
    drawn with NumPy's PCG64 from ``seed``, which gives the same indices on every platform). Sorted."""
    labels = np.asarray(labels)
    if not 0 < size < len(labels):
        raise ValueError(f"validation size must be between 1 and {len(labels) - 1}, got {size}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * size / len(labels)
    take = np.floor(share).astype(int)
    take[np.argsort(-(share - take), kind="stable")[: size - take.sum()]] += 1  # largest remainders
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _labels_digest(labels: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.asarray(labels, np.int64).tobytes()).hexdigest()[:16]


def validation_split(data: ImageData, *, root: str | Path | None = None) -> np.ndarray:
    """The fixed validation split of a full dataset: read from :func:`validation_file`, or carved with
    :func:`carve_validation` and written there (atomically) the first time.

    About 10 % of the training split, at most ``VALIDATION_SIZE`` (5,000 images for Fashion-MNIST and CIFAR),
    stratified by class. The file records the dataset, the number of training samples, a digest of the labels and
    the indices, so that it can be reviewed and checked: a file that does not match the dataset is an error that
    names it.
    """
    labels = _label_source(data)
    path = validation_file(data.name, root)
    size = min(VALIDATION_SIZE, int(round(0.1 * len(labels))))
    if path.exists():
        saved = _io.read_json(path, remedy="delete it; it is carved again, identically, at the next load")
        if saved.get("n_train") != len(labels) or saved.get("labels_digest") != _labels_digest(labels):
            raise ValueError(f"the validation split {path} was made for another version of {data.name!r} "
                             f"({saved.get('n_train')} training samples, labels {saved.get('labels_digest')}; loaded: "
                             f"{len(labels)}, {_labels_digest(labels)}). Restore the dataset files it was made for, "
                             f"or delete {path} to carve a new split (results made with the old one no longer "
                             f"compare)")
        idx = np.asarray(saved["indices"], dtype=np.int64)
        if len(idx) != saved.get("size") or len(np.unique(idx)) != len(idx) or idx.min() < 0 \
                or idx.max() >= len(labels):
            raise ValueError(f"the validation split {path} is damaged (indices do not match its size or the "
                             f"training set); delete it to carve it again")
        return np.sort(idx)
    idx = carve_validation(labels, size)
    record = {"dataset": _SPLIT_BASE.get(data.name, data.name), "what": "validation split carved from the training "
              "split: no original or retrain model trains on it; every selection reads it instead of the test split",
              "n_train": len(labels), "labels_digest": _labels_digest(labels), "size": len(idx),
              "stratified_by": "fine class" if data.fine_train is not None else "class", "seed": VALIDATION_SEED,
              "indices": "__INDICES__"}
    text = json.dumps(record, indent=1).replace('"__INDICES__"', json.dumps(idx.tolist()))  # one line of indices
    _io.atomic_write(path, lambda f: f.write(text + "\n"), mode="w")
    return idx
