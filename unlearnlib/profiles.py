"""Profiles: how big a run is. One place decides datasets, models, recipes, seeds and subset sizes.

- ``smoke``: CI. A stratified 3,000/1,000 subset of Fashion-MNIST and a tiny recipe; a chapter runs in under two
  minutes on a CPU. Its numbers mean nothing and are never published.
- ``cpu``: real results on 2 CPU cores. Full Fashion-MNIST and a small CNN whose original model reaches >= 91 %
  test and >= 97 % train accuracy (so random forgetting has a measurable train/test gap) in under 10 minutes.
- ``paper``: GPU. The papers' datasets, models and recipes (ResNet-18 on CIFAR with SSD's official recipe here;
  chapters override the dataset where their paper used another one).
- ``paper-smoke``: CI check of the paper path. The ``paper`` profile's datasets, architectures, recipe (one epoch)
  and code branches on a 200/50-image subset, one seed, the smallest grids cut to their first setting and one
  pass per method; its numbers mean nothing and are never published. It is what catches a crash that only the
  ``paper`` branches would hit. Its models are the paper architectures at base width :data:`PAPER_SMOKE_WIDTH`
  (``"resnet18-cifar@8"``: the same modules, branches, hooks and BatchNorm paths at ~1/60 of the parameters);
  with ``UNLEARNLIB_PAPER_SMOKE=full`` in the environment (``make test-paper``) it builds them at the paper width.
  Its models are at chance by construction, so the experiment loops score them instead of calling them collapsed
  (``collapse_guard=False``).

A *quick* profile (``smoke``, ``paper-smoke``) is a code check: chapters give it their smallest grids.

Chapters read ``PROFILE`` from their papermill ``parameters`` cell and call :func:`get_profile`.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace

from .models import split_arch, with_width
from .training import Recipe

#: paper-smoke's base width: the paper architectures with 8 channels where the paper has 64
PAPER_SMOKE_WIDTH = 8

#: set to ``full`` (or ``all``, the name ``make test-paper`` used first), paper-smoke builds the paper-width models
PAPER_SMOKE_ENV = "UNLEARNLIB_PAPER_SMOKE"


@dataclass(frozen=True)
class Profile:
    name: str
    dataset: str
    arch: str
    recipe: Recipe
    seeds: tuple[int, ...]
    train_size: int | None = None
    test_size: int | None = None
    svc_max_samples: int = 2000
    #: how many samples a "random" forget task has on this profile
    random_forget: int = 600
    #: the seed that hyperparameters are tuned on; never one of ``seeds``, which are reported. With several tuning
    #: seeds (``tuning_seeds``) it is the first of them
    tuning_seed: int = 100
    description: str = ""
    #: recipes that replace ``recipe`` for some datasets (the papers train longer on harder datasets)
    dataset_recipes: dict = field(default_factory=dict)
    #: (train_size, test_size) that replace the profile's sizes for some datasets (100 classes need more images)
    dataset_sizes: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    #: a code check (smoke, paper-smoke): chapters run their smallest grids and the numbers are never published
    quick: bool = False
    #: at most this many passes (epochs, rounds) for every unlearning method (:func:`unlearnlib.methods.cap_passes`,
    #: which chapters call with it); ``None``: the methods' own settings. Only paper-smoke caps: on a CPU the paper
    #: models make every pass costly, and a code check needs one
    pass_cap: int | None = None
    #: at most this many settings of every tuning grid (the first ones; :func:`unlearnlib.experiment.tune` and its
    #: siblings apply it and record it beside the budget). Only paper-smoke caps, for the same reason as ``pass_cap``
    grid_cap: int | None = None
    #: the seeds every tuning setting is scored on (:func:`unlearnlib.experiment.tune` averages the score over them,
    #: so that a choice does not hang on one seed's noise, nor on the float rounding of one CPU); the first is
    #: ``tuning_seed``. Left empty, it is ``(tuning_seed,)``
    tuning_seeds: tuple[int, ...] = ()
    #: how many rounds of grid extension every method is allowed when its choice sits on the edge of a numeric axis of
    #: its grid (:func:`unlearnlib.experiment.tune`); the same allowance for every method keeps the budget equal
    tuning_extensions: int = 2
    #: the base width of the paper architectures (``None``: the paper's). Set, every architecture that takes a width
    #: is built at it: ``arch`` (and any ``arch`` given to :meth:`replace`, e.g. REM's ``resnet9-capacity``) is
    #: spelt ``"<name>@<width>"``, so the model, its checkpoint key and :meth:`as_dict` all say which model it is
    arch_width: int | None = None
    #: whether the experiment loops give a collapsed model (one no better than a constant on the classes it should
    #: keep, :func:`unlearnlib.metrics.collapse_reason`) an unscored record. Only paper-smoke turns it off: its
    #: one-epoch models on 200 images are at chance by construction, so the guard would leave every row unscored and
    #: the scoring, table and verdict code that the profile exists to check would never run. Its numbers are never
    #: published; the guard itself is checked on real models in tests/test_collapse.py
    collapse_guard: bool = True

    def __post_init__(self):
        if self.arch_width is not None:
            object.__setattr__(self, "arch", with_width(self.arch, self.arch_width))
        seeds = tuple(int(s) for s in self.tuning_seeds) or (int(self.tuning_seed),)
        if seeds[0] != self.tuning_seed:
            raise ValueError(f"tuning_seed ({self.tuning_seed}) must be the first of tuning_seeds {seeds}; give "
                             f"tuning_seeds=({self.tuning_seed}, ...) or leave tuning_seeds empty")
        if len(set(seeds)) != len(seeds):  # (that none is reported is checked where it matters: experiment.tune)
            raise ValueError(f"tuning_seeds {seeds} must be distinct")
        if isinstance(self.tuning_extensions, bool) or not isinstance(self.tuning_extensions, int) \
                or self.tuning_extensions < 0:
            raise ValueError(f"tuning_extensions must be a whole number >= 0, got {self.tuning_extensions!r}")
        object.__setattr__(self, "tuning_seeds", seeds)

    def replace(self, **changes) -> "Profile":
        """A copy with ``changes``. Changing ``tuning_seed`` alone makes it the first tuning seed and keeps the
        others."""
        if "tuning_seed" in changes and "tuning_seeds" not in changes:
            first = changes["tuning_seed"]
            changes["tuning_seeds"] = (first, *(s for s in self.tuning_seeds[1:] if s != first))
        if "arch_width" in changes and changes["arch_width"] is None and "arch" not in changes:
            changes["arch"] = split_arch(self.arch)[0]  # back to the paper width
        return replace(self, **changes)

    def recipe_for(self, dataset: str) -> Recipe:
        """The training recipe of the original and retrain models on ``dataset``."""
        return self.dataset_recipes.get(dataset, self.recipe)

    def load_data(self, dataset: str | None = None):
        """The profile's dataset (or ``dataset``), subset as the profile says."""
        from .data import load_dataset

        name = dataset or self.dataset
        train_size, test_size = self.dataset_sizes.get(name, (self.train_size, self.test_size))
        return load_dataset(name, train_size=train_size, test_size=test_size)

    def as_dict(self) -> dict:
        from .training import recipe_spec

        d = asdict(self)
        d["recipe"] = recipe_spec(self.recipe)  # switches at their default are left out, as in the cache key
        d["dataset_recipes"] = {k: recipe_spec(r) for k, r in self.dataset_recipes.items()}
        for name, default in _LATER_FIELDS.items():  # as recipe_spec does: a profile that does not use them keeps
            if d[name] == default:                     # the description (and the keys hashed from it) it had
                del d[name]
        d["tuning_seeds"] = list(self.tuning_seeds)
        if self.tuning_seeds == (self.tuning_seed,):   # one tuning seed, as before tuning_seeds existed
            del d["tuning_seeds"]
        return d


#: Profile fields added after results and cache keys were made from :meth:`Profile.as_dict`, with their defaults
_LATER_FIELDS = {"quick": False, "pass_cap": None, "grid_cap": None, "dataset_sizes": {}, "tuning_extensions": 2,
                 "arch_width": None, "collapse_guard": True}

#: SSD's official ResNet-18 recipe on CIFAR-10 (SGD 0.1, one warm-up epoch, x0.2 at the milestones, and the
#: pytorch-cifar100 training transform: RandomCrop(32, padding=4), RandomHorizontalFlip, RandomRotation(15))
_SSD_RECIPE = Recipe(epochs=20, batch_size=64, lr=0.1, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                     schedule="multistep", milestones=(8, 12, 16), gamma=0.2, warmup_epochs=1, augment=True,
                     rotation=15.0)

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", dataset="fashion-mnist", arch="small-cnn",
        recipe=Recipe(epochs=2, batch_size=128, lr=3e-3, optimizer="adam", weight_decay=0.0, schedule="onecycle"),
        seeds=(0,), train_size=3000, test_size=1000, svc_max_samples=500, random_forget=100, quick=True,
        tuning_extensions=1,  # one tuning seed and one extension round: the code paths, at a cost make test can carry
        description="CI check: a 3,000-image subset, two epochs; numbers are meaningless"),
    "cpu": Profile(
        name="cpu", dataset="fashion-mnist", arch="small-cnn",
        recipe=Recipe(epochs=10, batch_size=128, lr=3e-3, optimizer="adam", weight_decay=0.0, schedule="onecycle"),
        seeds=(0, 1, 2), svc_max_samples=2000, random_forget=600, tuning_seeds=(100, 101),
        description="2 CPU cores: full Fashion-MNIST, small CNN, 10 epochs (~3 min per model)"),
    "paper": Profile(
        name="paper", dataset="cifar10", arch="resnet18-cifar",
        recipe=_SSD_RECIPE,
        seeds=(0, 1, 2), svc_max_samples=10000, random_forget=5000, tuning_seeds=(100, 101),
        dataset_recipes={  # SSD's official epochs and milestones per dataset (pretrain_model.py and conf.py)
            "cifar20": _SSD_RECIPE.replace(epochs=40, milestones=(15, 30, 35)),
            "cifar100": _SSD_RECIPE.replace(epochs=200, milestones=(60, 120, 160)),
        },
        description="GPU: CIFAR-10, ResNet-18 (CIFAR stem), SSD's official 20-epoch recipe"),
    "paper-smoke": Profile(
        name="paper-smoke", dataset="cifar10", arch="resnet18-cifar",
        recipe=_SSD_RECIPE.replace(epochs=1, milestones=()),
        seeds=(0,), train_size=200, test_size=50, svc_max_samples=50, random_forget=10, quick=True, pass_cap=1,
        grid_cap=1, arch_width=PAPER_SMOKE_WIDTH, collapse_guard=False,
        dataset_recipes={name: _SSD_RECIPE.replace(epochs=1, milestones=()) for name in ("cifar20", "cifar100")},
        dataset_sizes={name: (200, 100) for name in ("cifar20", "cifar100")},
        description="CI check of the paper path: the paper's datasets, architectures and branches on 200 CIFAR-10 "
                    "images (200 of the CIFAR-100 loader fixture), one epoch, one pass per method, one setting per "
                    "tuning grid, the models at base width arch_width (paper width with UNLEARNLIB_PAPER_SMOKE="
                    "full); numbers are meaningless"),
}


def paper_smoke_full_width() -> bool:
    """Whether the environment asks paper-smoke for the paper-width models (``UNLEARNLIB_PAPER_SMOKE=full``)."""
    return os.environ.get(PAPER_SMOKE_ENV, "").strip().lower() in ("full", "all")


def get_profile(name: str) -> Profile:
    """The profile ``name``; a clear error lists the valid names otherwise. ``paper-smoke`` builds the paper
    architectures at :data:`PAPER_SMOKE_WIDTH`, or at the paper width when :func:`paper_smoke_full_width`."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    profile = PROFILES[name]
    if name == "paper-smoke" and paper_smoke_full_width():
        profile = profile.replace(arch_width=None)
    return profile
