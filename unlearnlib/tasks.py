"""Forget tasks: which training samples must be forgotten (D_f), which remain (D_r), and how to test both.

A :class:`ForgetTask` holds the dataset and index arrays. ``task.save(path)`` writes the indices (and, for
corrupted data, the corruption) to one ``.npz`` file; ``ForgetTask.load(path)`` reloads the dataset by name and
checks its fingerprint, so a forget set is fixed once and reproducible everywhere.

Kinds:
- ``full_class``: every training sample of one or more classes;
- ``sub_class``: every sample of one fine class inside a superclass (CIFAR-20, ``fashion-mnist-super``);
- ``random``: a seeded random subset, by count or fraction;
- ``instances``: k given training indices;
- ``corrupted``: a corrupted training set (trigger patch, interclass label swap or random relabelling), of which a
  fraction ``discovery_rate`` is known (D_f) and the rest stays hidden inside D_r.

The validation split (``data.val_idx``) belongs to neither D_f nor D_r: every constructor builds both from the rest
of the training split, so that no original or retrain model trains on it. ``task.val_forget_idx`` and
``task.val_retain_idx`` are its two parts (the forgotten class's validation images and the others, for class tasks;
nothing and everything otherwise). Selection reads them; the test split is read only to report.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from . import _io
from .data import ImageData, load_dataset

CORRUPTIONS = ("trigger", "label_swap", "random_label")


@dataclass
class ForgetTask:
    """A forget request on ``data``: index arrays into the training split (forget/retain) and the test split.

    ``test_forget_idx`` are the test samples of what is forgotten (the forgotten class or sub-class); it is empty
    for random, instance and corrupted tasks, where there is no test counterpart. ``test_retain_idx`` are the other
    test samples. ``corruption`` describes the corrupted training set for ``kind == "corrupted"``.
    """

    kind: str
    data: ImageData
    forget_idx: np.ndarray
    retain_idx: np.ndarray
    test_forget_idx: np.ndarray
    test_retain_idx: np.ndarray
    params: dict = field(default_factory=dict)
    corruption: dict | None = None

    def __post_init__(self) -> None:
        for name in ("forget_idx", "retain_idx", "test_forget_idx", "test_retain_idx"):
            setattr(self, name, np.sort(np.asarray(getattr(self, name), dtype=np.int64)))
        if len(self.forget_idx) == 0:
            raise ValueError(f"empty forget set for {self.describe()}: nothing to forget. Check the class, the "
                             f"indices or the fraction you gave.")
        if len(self.retain_idx) == 0:
            raise ValueError(f"empty retain set for {self.describe()}: every training sample would be forgotten")
        if np.intersect1d(self.forget_idx, self.retain_idx).size:
            raise ValueError("forget and retain sets overlap")
        val = self.val_idx
        if len(val) and (np.intersect1d(self.forget_idx, val).size or np.intersect1d(self.retain_idx, val).size):
            raise ValueError(f"the forget or retain set of {self.describe()} overlaps the validation split "
                             f"(data.val_idx), on which no model may train; build the task with the constructors "
                             f"in unlearnlib.tasks, which leave it out")

    # ---------------------------------------------------------------------------------------------------------
    @property
    def val_idx(self) -> np.ndarray:
        """The validation split (training-split indices; empty when the dataset has none, e.g. a few-shot view)."""
        v = self.data.val_idx
        return np.array([], np.int64) if v is None else np.asarray(v, np.int64)

    @property
    def train_idx(self) -> np.ndarray:
        """D = D_f + D_r: everything the original model trains on (the training split minus the validation split)."""
        return np.union1d(self.forget_idx, self.retain_idx)

    def _val_forgotten(self) -> np.ndarray:
        val = self.val_idx
        if self.kind == "full_class":
            return np.isin(self.data.y_train.numpy()[val], self.params["classes"])
        if self.kind == "sub_class":
            return self.data.fine_train.numpy()[val] == self.params["fine_class"]
        return np.zeros(len(val), bool)

    @property
    def val_forget_idx(self) -> np.ndarray:
        """Validation images of what is forgotten (the class or sub-class); empty for sample-level tasks."""
        return self.val_idx[self._val_forgotten()]

    @property
    def val_retain_idx(self) -> np.ndarray:
        """Validation images of what remains: the validation counterpart of ``test_retain_idx``."""
        return self.val_idx[~self._val_forgotten()]

    def sealed(self) -> "ForgetTask":
        """The same request with the test split removed (empty test images, labels and indices): what a selection
        step is given, so that it cannot read the test split even by accident."""
        d = self.data
        data = replace(d, x_test=d.x_test[:0], y_test=d.y_test[:0],
                       fine_test=None if d.fine_test is None else d.fine_test[:0],
                       spec={**d.spec, "sealed": True})
        empty = np.array([], np.int64)
        return replace(self, data=data, test_forget_idx=empty, test_retain_idx=empty)

    # ---------------------------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def forget_classes(self) -> list[int]:
        """The forgotten class indices for class tasks, else []."""
        return list(self.params.get("classes", [])) if self.kind == "full_class" else []

    def describe(self) -> str:
        """A one-line human description, e.g. ``fashion-mnist: full class [Trouser] (6000 forget / 54000 retain)``."""
        p = self.params
        if self.kind == "full_class":
            what = "full class [" + ", ".join(self.data.classes[c] for c in p["classes"]) + "]"
        elif self.kind == "sub_class":
            what = f"sub-class {self.data.fine_classes[p['fine_class']]} (of {self.data.classes[p['superclass']]})"
        elif self.kind == "random":
            what = f"random {len(getattr(self, 'forget_idx', []))} samples (seed {p.get('seed')})"
        elif self.kind == "instances":
            what = f"{len(getattr(self, 'forget_idx', []))} given instances"
        else:
            what = (f"corrupted data ({p.get('corruption')}, {p.get('n_corrupt')} corrupted, "
                    f"discovery rate {p.get('discovery_rate')})")
        sizes = ""
        if hasattr(self, "retain_idx") and len(getattr(self, "forget_idx", [])):
            sizes = f" ({len(self.forget_idx)} forget / {len(self.retain_idx)} retain)"
        return f"{self.data.name}: {what}{sizes}"

    def __repr__(self) -> str:
        return f"ForgetTask({self.describe()})"

    # ---------------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the task to ``path`` (.npz) atomically: indices, parameters, dataset spec and fingerprint."""
        meta = {"kind": self.kind, "params": self.params, "dataset": _base_spec(self.data),
                "fingerprint": self.data.fingerprint(), "format": 2,
                "validation": {"size": int(len(self.val_idx)), "digest": _digest(self.val_idx)}}
        arrays = {"forget_idx": self.forget_idx, "retain_idx": self.retain_idx,
                  "test_forget_idx": self.test_forget_idx, "test_retain_idx": self.test_retain_idx}
        if self.corruption is not None:
            arrays.update({f"corruption_{k}": v for k, v in self.corruption.items() if isinstance(v, np.ndarray)})
            meta["corruption"] = {k: v for k, v in self.corruption.items() if not isinstance(v, np.ndarray)}
        arrays["meta"] = np.array(json.dumps(meta))
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        return _io.atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str | Path, data: ImageData | None = None) -> "ForgetTask":
        """Read a task saved by :meth:`save`, loading its dataset by name unless ``data`` is given."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no saved forget task at {path}; create one (e.g. unlearnlib.tasks.full_class) "
                                    f"and call task.save(path)")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
        if meta.get("format", 1) < 2:
            raise ValueError(f"the forget set {path} was saved before the evaluation protocol (format 1): its sets "
                             f"include the validation split that models must not train on. Delete it; the chapter "
                             f"that uses it fixes it again under the protocol when it runs")
        spec = meta["dataset"]
        if data is None:
            data = load_dataset(spec["name"], train_size=spec.get("train_size"), test_size=spec.get("test_size"),
                                subset_seed=spec.get("subset_seed", 0))
        corruption = None
        if meta["kind"] == "corrupted":
            corruption = {**meta["corruption"],
                          **{k[len("corruption_"):]: v for k, v in arrays.items() if k.startswith("corruption_")}}
            data = _apply_corruption(data, corruption)
        if data.fingerprint() != meta["fingerprint"]:
            raise ValueError(f"the dataset loaded for {path} differs from the one the task was made on "
                             f"({spec}); were the data files replaced or a different variant loaded "
                             f"(e.g. CIFAR-10 JPEG vs official)?")
        val = np.array([], np.int64) if data.val_idx is None else np.asarray(data.val_idx, np.int64)
        if _digest(val) != meta["validation"]["digest"]:
            raise ValueError(f"the forget set {path} was made with another validation split than "
                             f"{data.name!r} has now (see unlearnlib.data.validation_file); restore that split's "
                             f"file, or delete {path} to fix the task again")
        return cls(meta["kind"], data, arrays["forget_idx"], arrays["retain_idx"], arrays["test_forget_idx"],
                   arrays["test_retain_idx"], meta["params"], corruption)


def fixed(task: ForgetTask, path: str | Path) -> ForgetTask:
    """Pin ``task`` to the file ``path``: save it the first time, afterwards load the saved one.

    If the saved file holds different indices than ``task`` (the definition or the data changed), raise instead of
    silently forgetting other samples than earlier runs did.
    """
    path = Path(path)
    if not path.exists():
        task.save(path)
        return task
    saved = ForgetTask.load(path, data=task.data if task.kind != "corrupted" else None)
    same = all(np.array_equal(getattr(saved, n), getattr(task, n))
               for n in ("forget_idx", "retain_idx", "test_forget_idx", "test_retain_idx"))
    if not same or saved.kind != task.kind:
        raise ValueError(f"the saved forget set {path} differs from the task built now ({task.describe()}); delete "
                         f"the file to re-fix it, or load it with ForgetTask.load to reuse the saved one")
    return saved


def _base_spec(data: ImageData) -> dict:
    return {k: v for k, v in data.spec.items() if k in ("name", "variant", "train_size", "test_size", "subset_seed")}


def _in_validation(data: ImageData) -> np.ndarray:
    """A boolean mask over the training split: True on the validation split."""
    mask = np.zeros(len(data.y_train), bool)
    if data.val_idx is not None:
        mask[np.asarray(data.val_idx)] = True
    return mask


def _split_by_mask(data: ImageData, mask_train: np.ndarray, mask_test: np.ndarray) -> tuple[np.ndarray, ...]:
    """forget, retain (both outside the validation split), test forget, test retain."""
    usable = ~_in_validation(data)
    return (np.flatnonzero(mask_train & usable), np.flatnonzero(~mask_train & usable), np.flatnonzero(mask_test),
            np.flatnonzero(~mask_test))


# --------------------------------------------------------------------------------------------------------------
# Constructors

def full_class(data: ImageData, classes: int | str | Iterable[int | str]) -> ForgetTask:
    """Forget every training sample of ``classes`` (indices or names)."""
    if isinstance(classes, (int, str, np.integer)):
        classes = [classes]
    ids = sorted({data.class_index(c) for c in classes})
    if not ids:
        raise ValueError("full_class needs at least one class to forget")
    if len(ids) == data.num_classes:
        raise ValueError("full_class would forget every class; nothing would remain")
    parts = _split_by_mask(data, np.isin(data.y_train.numpy(), ids), np.isin(data.y_test.numpy(), ids))
    return ForgetTask("full_class", data, *parts, params={"classes": ids})


def sub_class(data: ImageData, fine_class: int | str) -> ForgetTask:
    """Forget one fine class inside its superclass; the model keeps predicting the superclass label."""
    fine = data.class_index(fine_class, fine=True)
    mask_train = (data.fine_train == fine).numpy()
    mask_test = (data.fine_test == fine).numpy()
    superclass = int(data.y_train[torch.from_numpy(mask_train)][0]) if mask_train.any() else -1
    return ForgetTask("sub_class", data, *_split_by_mask(data, mask_train, mask_test),
                      params={"fine_class": fine, "superclass": superclass})


def random_samples(data: ImageData, n: int | None = None, *, fraction: float | None = None,
                   seed: int = 0) -> ForgetTask:
    """Forget a random subset of the training set outside the validation split, of ``n`` samples or a ``fraction``
    of it (fixed by ``seed``)."""
    pool = data.train_idx
    total = len(pool)
    if (n is None) == (fraction is None):
        raise ValueError("give exactly one of n (a count) or fraction")
    if fraction is not None:
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        n = int(round(fraction * total))
    if not 0 < n < total:
        raise ValueError(f"n must be between 1 and {total - 1} (the training set has {total} samples), got {n}")
    forget = np.sort(pool[np.random.default_rng(seed).choice(total, size=n, replace=False)])
    return ForgetTask("random", data, forget, np.setdiff1d(pool, forget), np.array([], np.int64),
                      np.arange(len(data.y_test)), params={"n": int(n), "seed": seed})


def instances(data: ImageData, indices: Sequence[int]) -> ForgetTask:
    """Forget the given training indices (e.g. k instances named by a paper or a user's deletion request)."""
    idx = np.asarray(list(indices), dtype=np.int64)
    total = len(data.y_train)
    if idx.size == 0:
        raise ValueError("instances needs at least one training index to forget")
    if idx.min() < 0 or idx.max() >= total:
        raise ValueError(f"indices must be in 0..{total - 1}; got min {idx.min()}, max {idx.max()}")
    if len(np.unique(idx)) != len(idx):
        raise ValueError("indices contain duplicates")
    in_val = np.intersect1d(idx, data.val_idx if data.val_idx is not None else [])
    if in_val.size:
        raise ValueError(f"{in_val.size} of the indices (e.g. {in_val[:3].tolist()}) are in the validation split, on "
                         f"which no model trains, so there is nothing to forget there; pick indices from "
                         f"data.train_idx")
    mask = np.zeros(total, bool)
    mask[idx] = True
    usable = ~_in_validation(data)
    return ForgetTask("instances", data, np.flatnonzero(mask), np.flatnonzero(~mask & usable), np.array([], np.int64),
                      np.arange(len(data.y_test)), params={"k": int(idx.size)})


def split_instances(task: ForgetTask, sizes: Sequence[int], *, seed: int = 0) -> list[ForgetTask]:
    """Deletion requests carved out of ``task``'s forget set: a permutation of it (fixed by ``seed``) cut into
    consecutive pieces of ``sizes`` samples, each an :func:`instances` task.

    ``split_instances(task, [k], seed=s)[0]`` is a random k-subset, and the subsets for growing k are nested (the
    first 8 of the 16, ...), so that a sweep over k varies only k. ``[16] * 8`` gives a sequence of eight requests.
    """
    sizes = [int(n) for n in sizes]
    if any(n < 1 for n in sizes):
        raise ValueError(f"every request needs at least one sample, got sizes {sizes}")
    if sum(sizes) > len(task.forget_idx):
        raise ValueError(f"the requests need {sum(sizes)} samples but the forget set has {len(task.forget_idx)}")
    order = task.forget_idx[np.random.default_rng(seed).permutation(len(task.forget_idx))]
    cuts = np.cumsum([0] + sizes)
    return [instances(task.data, order[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]


#: the version of the corrupted-task definitions; a saved task made under another one is refused on load
CORRUPTION_DEFINITION = 2


def add_trigger(x: torch.Tensor, size: int = 3, value: int = 255) -> torch.Tensor:
    """Stamp a ``size`` x ``size`` patch of ``value`` (white by default) on the last ``size`` rows and columns of
    uint8 images (N, C, H, W), as the official REM code does. Returns a new tensor."""
    x = x.clone()
    x[..., -size:, -size:] = value
    return x


def corrupted(data: ImageData, corruption: str, *, n_corrupt: int | None = None, fraction: float | None = None,
              discovery_rate: float = 1.0, target_class: int | str = 0,
              swap_classes: tuple[int | str, int | str] = (3, 5), patch_size: int = 3, seed: int = 0) -> ForgetTask:
    """A corrupted training set, of which a fraction ``discovery_rate`` is known and must be forgotten.

    - ``"trigger"`` (high regularity): ``n_corrupt`` samples of any class (the target class included, as in the
      official code) get a white 3 x 3 patch on their last rows and columns and the label ``target_class`` (a
      backdoor). Augmentation stamps the patch again after crop and flip (see ``ImageData.trigger``).
    - ``"label_swap"`` (medium): samples of the two ``swap_classes`` get each other's label (a random half from
      each).
    - ``"random_label"`` (low): samples get a uniformly random *wrong* label.

    The corrupted set D_c is drawn with ``seed``; the known part D_f is the first ``discovery_rate`` share of one
    permutation of D_c (also from ``seed``), so the D_f of a higher rate contains that of a lower one.
    The original model must be trained on ``task.data`` (the corrupted data). ``task.corruption`` keeps every
    corrupted index, the known (``forget_idx``) and hidden ones, and the clean labels.
    """
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; choose one of {', '.join(CORRUPTIONS)}")
    if not 0 < discovery_rate <= 1:
        raise ValueError(f"discovery_rate must be in (0, 1], got {discovery_rate}")
    rng = np.random.default_rng(seed)
    y = data.y_train.numpy()
    total = len(y)
    usable = ~_in_validation(data)  # the validation split stays clean, and outside D_f and D_r
    if (n_corrupt is None) == (fraction is None):
        raise ValueError("give exactly one of n_corrupt or fraction")
    n = n_corrupt if n_corrupt is not None else int(round(fraction * usable.sum()))
    if corruption == "trigger":
        target = data.class_index(target_class)
        pool = np.flatnonzero(usable)
    elif corruption == "label_swap":
        a, b = (data.class_index(c) for c in swap_classes)
        if a == b:
            raise ValueError("swap_classes must be two different classes")
        pool = None
    else:
        pool = np.flatnonzero(usable)
    if corruption == "label_swap":
        half = n // 2
        pa, pb = np.flatnonzero((y == a) & usable), np.flatnonzero((y == b) & usable)
        if half < 1 or half > min(len(pa), len(pb)):
            raise ValueError(f"n_corrupt must be between 2 and {2 * min(len(pa), len(pb))} for a label swap")
        chosen = np.concatenate([rng.choice(pa, half, replace=False), rng.choice(pb, n - half, replace=False)])
        new_labels = np.where(y[chosen] == a, b, a)
    else:
        if not 0 < n <= len(pool):
            raise ValueError(f"n_corrupt must be between 1 and {len(pool)}, got {n}")
        chosen = rng.choice(pool, n, replace=False)
        if corruption == "trigger":
            new_labels = np.full(n, target)
        else:
            shift = rng.integers(1, data.num_classes, size=n)  # never the true label
            new_labels = (y[chosen] + shift) % data.num_classes
    chosen_order = rng.permutation(chosen)
    n_known = max(1, math.ceil(discovery_rate * n))
    known, hidden = np.sort(chosen_order[:n_known]), np.sort(chosen_order[n_known:])
    order = np.argsort(chosen)
    info = {"kind": corruption, "definition": CORRUPTION_DEFINITION, "patch_size": patch_size,
            "corrupt_idx": np.sort(chosen),
            "corrupt_labels": new_labels[order].astype(np.int64), "clean_labels": y[np.sort(chosen)].astype(np.int64),
            "known_idx": known, "hidden_idx": hidden}
    if corruption == "trigger":
        info["target_class"] = int(target)
    bad = _apply_corruption(data, info)
    mask = np.zeros(total, bool)
    mask[known] = True
    params = {"corruption": corruption, "n_corrupt": int(n), "discovery_rate": discovery_rate, "seed": seed}
    if corruption == "trigger":
        params["target_class"] = int(target)
    if corruption == "label_swap":
        params["swap_classes"] = [int(a), int(b)]
    return ForgetTask("corrupted", bad, np.flatnonzero(mask), np.flatnonzero(~mask & usable), np.array([], np.int64),
                      np.arange(len(data.y_test)), params=params, corruption=info)


def _apply_corruption(data: ImageData, info: dict) -> ImageData:
    idx = torch.from_numpy(np.asarray(info["corrupt_idx"]))
    y = data.y_train.clone()
    y[idx] = torch.from_numpy(np.asarray(info["corrupt_labels"]))
    x = data.x_train
    if info.get("definition", 1) != CORRUPTION_DEFINITION:
        raise ValueError(f"this corrupted task was made under definition {info.get('definition', 1)} of the "
                         f"corrupted tasks, and the library now builds definition {CORRUPTION_DEFINITION} (the trigger "
                         f"moved to the last rows and columns and may fall on the target class). Delete the saved "
                         f"task; the chapter that uses it fixes it again when it runs")
    if info["kind"] == "trigger":
        x = x.clone()
        x[idx] = add_trigger(x[idx], size=int(info["patch_size"]))
    bad = data.with_train(x, y, corruption=info["kind"], corrupt_digest=_digest(info["corrupt_idx"]))
    if info["kind"] == "trigger":
        mask = torch.zeros(len(y), dtype=torch.bool)
        mask[idx] = True
        bad = replace(bad, trigger={"mask": mask, "size": int(info["patch_size"])})
    return bad


def _digest(a) -> str:
    import hashlib

    return hashlib.sha256(np.asarray(a, np.int64).tobytes()).hexdigest()[:12]


def triggered_test(task: ForgetTask) -> tuple[torch.Tensor, torch.Tensor]:
    """For a trigger task: test images outside the target class with the patch stamped, and their true labels.

    The attack success rate is the fraction of these that the model assigns to the target class.
    """
    if task.kind != "corrupted" or task.corruption["kind"] != "trigger":
        raise ValueError("triggered_test needs a corrupted task with corruption='trigger'")
    keep = task.data.y_test != task.corruption["target_class"]
    return add_trigger(task.data.x_test[keep], size=int(task.corruption["patch_size"])), task.data.y_test[keep]


# --------------------------------------------------------------------------------------------------------------
# Sample budgets

def draw_per_class(idx: np.ndarray, labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``per_class`` of ``idx`` from every class present (``labels`` indexed by sample), drawn without
    replacement with ``rng``, sorted. The budget draw of :func:`few_shot` and of a few-shot tuning's scoring set."""
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(f"per_class must be a positive whole number of samples, got {per_class!r}")
    picked = [rng.choice(idx[labels[idx] == c], min(per_class, int((labels[idx] == c).sum())), replace=False)
              for c in np.unique(labels[idx])]
    return np.sort(np.concatenate(picked)) if picked else np.array([], np.int64)


def few_shot(task: ForgetTask, per_class: int, *, seed: int = 0) -> ForgetTask:
    """The same request seen through a budget: at most ``per_class`` training samples of every class on each side
    (forget and retain), drawn with ``seed``, and nothing else.

    The returned task's dataset holds *only* those samples (its test split is empty), so a method given it cannot
    read a sample beyond the budget, by construction. ``params["source_idx"]`` maps its training samples back to
    the indices of ``task.data``. Use it as the task a method sees, and evaluate on the full ``task``.
    """
    rng = np.random.default_rng(seed)
    y = task.data.y_train.numpy()
    forget = draw_per_class(task.forget_idx, y, per_class, rng)
    retain = draw_per_class(task.retain_idx, y, per_class, rng)
    source = np.concatenate([forget, retain])
    pick = torch.from_numpy(source)
    data = task.data
    small = replace(data, x_train=data.x_train[pick], y_train=data.y_train[pick], x_test=data.x_test[:0],
                    y_test=data.y_test[:0],
                    fine_train=None if data.fine_train is None else data.fine_train[pick],
                    fine_test=None if data.fine_test is None else data.fine_test[:0], val_idx=None,
                    trigger=None if data.trigger is None else {**data.trigger, "mask": data.trigger["mask"][pick]},
                    spec={**data.spec, "few_shot": {"per_class": int(per_class), "seed": seed}})
    params = {**task.params, "per_class": int(per_class), "budget_seed": seed, "source_idx": source.tolist()}
    empty = np.array([], np.int64)
    return ForgetTask(task.kind, small, np.arange(len(forget)), np.arange(len(forget), len(source)), empty, empty,
                      params=params, corruption=None)
