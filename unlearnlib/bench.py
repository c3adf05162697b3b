"""How long will a chapter take on the ``paper`` profile? Measured throughput times a counted workload.

    python -m unlearnlib.bench                      # measure here, predict every chapter (under a minute on 2 cores)
    python -m unlearnlib.bench --device cuda        # measure on the GPU (more steps, the recipes' batch sizes)
    python -m unlearnlib.bench --quick              # fewer, smaller steps: rougher, about twice as fast
    python -m unlearnlib.bench --assume t4 --assume h100   # ASSUMED GPU throughputs instead (no measurement)
    python -m unlearnlib.bench --seeds 0 --workload        # one seed; list what each chapter trains and evaluates

The bench trains and evaluates the book's models on synthetic uint8 images through the library's own code path
(:func:`~unlearnlib.training.train_model` and :func:`~unlearnlib.training.predict_logits`, so whatever those do on
a device, mixed precision and channels_last on CUDA included, is what is timed): a few warm-up steps, then timed
steps. :func:`paper_workload` counts, per chapter, the models it trains on the ``paper`` profile and the
evaluation passes of its main tables, from :func:`~unlearnlib.profiles.get_profile` and
:func:`~unlearnlib.experiment.corruption_benchmark`, so the counts follow the code. A chapter's predicted time is

    sum over trained models (count x epochs x training images / training images per second)
    + sum over evaluation passes (count x images / evaluation images per second).

Every time it prints is a *prediction*. The unlearning methods themselves (and tuning runs, SSD's importance
passes, L2UL's adversarial examples, the mixed-linear solvers, ablation cells) are NOT included: their cost
depends on hyperparameters chosen at run time and on stopping rules; each chapter's entry says what is left out.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from .toc import parse_seeds

if TYPE_CHECKING:  # both pull in torch, which the module imports only when it measures
    from .profiles import Profile
    from .training import Recipe

# ----------------------------------------------------------------------------------------------------------------
# What is measured


@dataclass(frozen=True)
class BenchModel:
    """A model the book trains, with the input it sees and the recipe it trains with."""

    name: str
    arch: str
    channels: int
    image_size: int
    num_classes: int
    recipe: Recipe
    used_by: str


def bench_models() -> dict[str, BenchModel]:
    """The cpu profile's model and the two paper models, each with the recipe (and so the batch size) it is
    trained with in the book: taken from the profiles and the corruption benchmark, not copied."""
    from .experiment import corruption_benchmark
    from .profiles import get_profile

    cpu, paper = get_profile("cpu"), get_profile("paper")
    rem = corruption_benchmark(paper)
    return {
        "small-cnn": BenchModel("small-cnn", cpu.arch, 1, 28, 10, cpu.recipe, "cpu profile (Fashion-MNIST)"),
        "resnet18-cifar": BenchModel("resnet18-cifar", paper.arch, 3, 32, 10, paper.recipe,
                                     "paper profile (CIFAR, SSD recipe)"),
        "resnet9-capacity": BenchModel("resnet9-capacity", rem["arch"], 3, 32, 10, rem["recipe"],
                                       "paper corruption benchmark (REM, comparison)"),
    }


#: architectures that cost what a benchmarked one costs (a LeakyReLU instead of a ReLU changes nothing measurable)
SAME_COST = {"resnet18-cifar-leaky": "resnet18-cifar", "small-cnn-leaky": "small-cnn",
             "small-cnn-capacity": "small-cnn"}


def bench_name(arch: str) -> str:
    """The benchmarked model whose throughput stands for ``arch``."""
    return SAME_COST.get(arch, arch)


@dataclass(frozen=True)
class Plan:
    """How many steps to time, and how big they are. ``step_gflop`` caps a step's work on the CPU (the batch is the
    recipe's, or fewer images when a step would cost more than that), so that the whole bench stays under a minute
    on 2 cores; ``None`` (CUDA) means the recipe's batch for training and the library's default for evaluation."""

    step_gflop: float | None
    warmup_steps: int
    train_steps: int
    warmup_batches: int
    eval_batches: int


PLANS = {  # (device type, quick)
    ("cpu", False): Plan(40.0, 1, 3, 1, 3),
    ("cpu", True): Plan(20.0, 1, 1, 1, 1),
    ("cuda", False): Plan(None, 5, 30, 2, 10),
    ("cuda", True): Plan(None, 2, 5, 1, 3),
}


def _batch(full: int, flops_per_img: float, plan: Plan, floor: int) -> int:
    """``full`` images, or as many as fit ``plan.step_gflop`` (at least ``floor``)."""
    if plan.step_gflop is None:
        return full
    return min(full, max(floor, int(plan.step_gflop * 1e9 // flops_per_img)))


@dataclass(frozen=True)
class Throughput:
    """Images per second of one model on one device, training (at ``train_batch``) and evaluating."""

    model: str
    train: float
    eval: float
    train_batch: int
    eval_batch: int
    source: str  # "measured on cpu", or "ASSUMED ..." for the assumed GPUs
    train_flops: float = float("nan")  # per image, forward and backward (flops_per_image)


def _synthetic_data(n: int, spec: BenchModel, seed: int = 0):
    """``n`` random uint8 images and labels shaped like ``spec``'s dataset, as an in-memory ImageData."""
    import torch

    from .data import ImageData

    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, spec.channels, spec.image_size, spec.image_size), generator=gen,
                      dtype=torch.uint8)
    y = torch.randint(0, spec.num_classes, (n,), generator=gen)
    return ImageData("bench", x, y, x, y, [str(c) for c in range(spec.num_classes)], (0.5,) * spec.channels,
                     (0.25,) * spec.channels)


def _timed(fn, device) -> float:
    """Seconds that ``fn()`` takes, with the device's queue drained before and after."""
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def measure_throughput(spec: BenchModel, *, device: str = "auto", quick: bool = False) -> Throughput:
    """Training and evaluation images per second of ``spec`` on ``device``, through ``train_model`` and
    ``predict_logits`` on synthetic images: warm-up steps first (allocation, cuDNN autotuning), then timed ones."""
    from .models import build_model
    from .training import resolve_device

    device = resolve_device(device)
    plan = PLANS[("cuda" if device.type == "cuda" else "cpu", quick)]  # other devices (MPS) get the CPU's plan
    train_flops, eval_flops = flops_per_image(spec)
    tb = _batch(spec.recipe.batch_size, train_flops, plan, floor=4)
    eb = _batch(4096 if device.type == "cuda" else 1024, eval_flops, plan, floor=8)
    n = max((plan.warmup_steps + plan.train_steps) * tb, (plan.warmup_batches + plan.eval_batches) * eb)
    data = _synthetic_data(n, spec)
    model = build_model(spec.arch, spec.num_classes, spec.channels, spec.image_size, seed=0)
    train = _train_seconds(model, data, spec, tb, plan, device)
    evaluate = _eval_seconds(model, data, eb, plan, device)
    return Throughput(spec.name, plan.train_steps * tb / train, plan.eval_batches * eb / evaluate, tb, eb,
                      f"measured on {device.type}", train_flops)


def _train_seconds(model, data, spec: BenchModel, batch: int, plan: Plan, device) -> float:
    """Seconds of ``plan.train_steps`` optimisation steps of the recipe (one epoch over that many batches)."""
    import numpy as np

    from .training import train_model

    recipe = spec.recipe.replace(epochs=1, batch_size=batch)
    warm = np.arange(plan.warmup_steps * batch)
    timed = np.arange(plan.train_steps * batch)
    train_model(model, data, warm, recipe, device=device, progress=False)
    return _timed(lambda: train_model(model, data, timed, recipe, device=device, progress=False), device)


def _eval_seconds(model, data, batch: int, plan: Plan, device) -> float:
    """Seconds of ``plan.eval_batches`` evaluation batches through ``predict_logits``."""
    import numpy as np

    from .training import predict_logits

    predict_logits(model, data, np.arange(plan.warmup_batches * batch), batch_size=batch, device=device)
    timed = np.arange(plan.eval_batches * batch)
    return _timed(lambda: predict_logits(model, data, timed, batch_size=batch, device=device), device)


def measure_all(*, device: str = "auto", quick: bool = False) -> dict[str, Throughput]:
    """:func:`measure_throughput` of every model in :func:`bench_models`."""
    return {name: measure_throughput(spec, device=device, quick=quick) for name, spec in bench_models().items()}


@functools.lru_cache(maxsize=None)
def flops_per_image(spec: BenchModel) -> tuple[float, float]:
    """Floating-point operations per image of one training step (forward and backward) and of one evaluation,
    counted by PyTorch's FlopCounterMode on the library's model (convolutions and matrix products only; once per
    model and process, it takes seconds on a CPU)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from .models import build_model

    model = build_model(spec.arch, spec.num_classes, spec.channels, spec.image_size, seed=0)
    x = torch.randn(2, spec.channels, spec.image_size, spec.image_size)
    with FlopCounterMode(display=False) as train:
        F.cross_entropy(model.train()(x), torch.zeros(2, dtype=torch.long)).backward()
    with FlopCounterMode(display=False) as evaluate, torch.no_grad():
        model.eval()(x)
    return train.get_total_flops() / 2, evaluate.get_total_flops() / 2


# ----------------------------------------------------------------------------------------------------------------
# ASSUMED GPUs (not measured)


@dataclass(frozen=True)
class AssumedGPU:
    """A GPU described by assumptions, not measurements: the datasheet peak of the precision the library trains in
    there, the fraction of it that small 32x32 convnets are assumed to sustain, and a fixed host-side cost per
    optimisation step or evaluation batch (Python, kernel launches, the batch's indexing and augmentation)."""

    name: str
    peak_tflops: float
    precision: str
    utilisation: float
    step_overhead_s: float
    why: str


ASSUMED_GPUS = {
    "t4": AssumedGPU(
        "NVIDIA T4 (Colab's free GPU)", 65.0, "float16 autocast with a gradient scaler (T4 has no bfloat16)", 0.12,
        0.005,
        "65 TFLOPS: NVIDIA T4 datasheet, FP16 tensor cores. 12 %: ASSUMED, so that ResNet-18 (CIFAR stem) trains at "
        "about 2,000 images/s at batch 64, the order of magnitude commonly reported for mixed-precision CIFAR "
        "ResNet-18 on a T4; 5 ms per step: ASSUMED for Colab's 2 host vCPUs."),
    "h100": AssumedGPU(
        "NVIDIA H100 SXM", 989.0, "bfloat16 autocast", 0.10, 0.004,
        "989 TFLOPS: NVIDIA H100 SXM datasheet, dense BF16 tensor cores. 10 %: ASSUMED (32x32 images at batch 64 "
        "keep the tensor cores mostly idle); 4 ms per step: ASSUMED eager-PyTorch launch cost of a ResNet-18 step. "
        "The H100/T4 ratio (about 5x for ResNet-18 at batch 64, more for ResNet-9 at batch 512) follows from these "
        "two assumptions, not from a measurement."),
}


def assumed_throughput(gpu: str) -> dict[str, Throughput]:
    """ASSUMED (not measured) throughputs of every bench model on ``gpu`` ("t4" or "h100"): a step of ``b`` images
    takes ``b x FLOPs per image / (peak x utilisation) + overhead``, with the FLOPs counted on the library's model
    (:func:`flops_per_image`) and the rest from :data:`ASSUMED_GPUS`, whose ``why`` says where each number comes
    from. A measurement on the GPU itself (``python -m unlearnlib.bench --device cuda``) supersedes them."""
    if gpu not in ASSUMED_GPUS:
        raise ValueError(f"no assumed throughput for {gpu!r}; choose one of {', '.join(ASSUMED_GPUS)}")
    g = ASSUMED_GPUS[gpu]
    rate = g.peak_tflops * 1e12 * g.utilisation
    out = {}
    for name, spec in bench_models().items():
        train_flops, eval_flops = flops_per_image(spec)
        tb, eb = spec.recipe.batch_size, 4096  # the recipe's batch; predict_logits' default on CUDA
        out[name] = Throughput(name, tb / (tb * train_flops / rate + g.step_overhead_s),
                               eb / (eb * eval_flops / rate + g.step_overhead_s), tb, eb, f"ASSUMED {g.name}",
                               train_flops)
    return out


# ----------------------------------------------------------------------------------------------------------------
# What each chapter trains and evaluates on the paper profile


@dataclass(frozen=True)
class Training:
    """``per_seed`` models for each of ``seeds``, each trained for ``epochs`` over ``images`` training images.
    ``key`` names the trained set (dataset, architecture, recipe, training indices) when another chapter can load
    the same checkpoint from the cache, so that a whole-book run trains it once."""

    what: str
    model: str
    epochs: int
    images: int
    seeds: tuple[int, ...]
    source: str
    per_seed: int = 1
    key: str | None = None

    @property
    def count(self) -> int:
        return self.per_seed * len(self.seeds)

    @property
    def images_seen(self) -> int:
        return self.count * self.epochs * self.images


@dataclass(frozen=True)
class Evaluation:
    """``count`` evaluation passes of ``images`` images each (logits of every image, no gradients)."""

    what: str
    model: str
    images: int
    count: int
    source: str


@dataclass(frozen=True)
class ChapterWorkload:
    """What one chapter trains and evaluates on the paper profile, and what the prediction leaves out."""

    chapter: str
    seeds: tuple[int, ...]
    trainings: tuple[Training, ...]
    evaluations: tuple[Evaluation, ...]
    not_included: str

    def seconds(self, throughput: Mapping[str, Throughput]) -> tuple[float, float]:
        """Predicted (training, evaluation) seconds at ``throughput`` ({bench model: Throughput})."""
        train = sum(t.images_seen / throughput[t.model].train for t in self.trainings)
        evaluate = sum(e.count * e.images / throughput[e.model].eval for e in self.evaluations)
        return train, evaluate


#: CIFAR-10/100 (and CIFAR-20, CIFAR-100 with superclass labels): training and test images
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000
#: the training sets of the corrupted-data models: one per corruption (trigger, label swap, random labels)
CORRUPTED = "corrupted:trigger,label_swap,random_label"
#: CIFAR-100's 20 superclasses hold 5 fine classes each (the sub-class candidates of one superclass)
FINE_PER_SUPERCLASS = 5


@dataclass(frozen=True)
class _Ctx:
    """What every chapter's count needs: the profile, the reported seeds, the tuning seed and |D|."""

    profile: Profile
    seeds: tuple[int, ...]
    tuning: tuple[int, ...]
    d: int  # |D|: the training split without the validation split

    def train(self, what: str, dataset: str, images: int, seeds: Sequence[int], source: str, *, arch=None,
              recipe=None, per_seed: int = 1, trainset: str | None = None) -> Training:
        """A Training of ``arch`` (default: the profile's) with ``recipe`` (default: the profile's for
        ``dataset``); ``trainset`` names the training indices for the sharing key."""
        arch = arch or self.profile.arch
        recipe = recipe or self.profile.recipe_for(dataset)
        key = None if trainset is None else f"{dataset}/{arch}/{recipe}/{trainset}"
        return Training(what, bench_name(arch), recipe.epochs, images, tuple(seeds), source, per_seed, key)


def _context(seeds: Sequence[int] | None, default: Sequence[int] | None = None) -> _Ctx:
    from .data import VALIDATION_SIZE
    from .profiles import get_profile

    p = get_profile("paper")
    chosen = tuple(seeds) if seeds is not None else tuple(default if default is not None else p.seeds)
    d = CIFAR_TRAIN - min(VALIDATION_SIZE, round(0.1 * CIFAR_TRAIN))
    return _Ctx(p, chosen, (p.tuning_seed,), d)


def _full_eval(c: _Ctx) -> int:
    """Images of one :func:`~unlearnlib.metrics.evaluate`: logits of D_f, D_r (together |D|) and the test split."""
    return c.d + CIFAR_TEST


def _corruption_eval(cfg: dict, rates: Sequence[float]) -> int:
    """Images of one :func:`~unlearnlib.metrics.corruption_metrics`, on average over ``rates`` and the three
    corruptions: the corrupted set (healed), the test split, the found part, and for the trigger (one corruption in
    three) the stamped test split."""
    from .experiment import REGULARITY

    n = cfg["n_corrupt"]
    return n + CIFAR_TEST + round(n * sum(rates) / len(rates)) + CIFAR_TEST // len(REGULARITY)


def _foundations(c: _Ctx) -> ChapterWorkload:
    S, T, rf, per_class = c.seeds, c.tuning, c.profile.random_forget, c.d // 10
    r18 = c.profile.arch
    trainings = (
        c.train("original, CIFAR-10", "cifar10", c.d, S + T, "cell 'rows, refs' (reference_models per seed; one "
                "original serves both tasks) and tune() on the tuning seed (cell 'GRIDS')", trainset="D"),
        c.train("retrain without 'automobile'", "cifar10", c.d - per_class, S, "cell 'rows, refs': the class task's "
                "retrain model", trainset="D-class:automobile"),
        c.train(f"retrain without {rf} random images", "cifar10", c.d - rf, S, "cell 'rows, refs': the random "
                "task's retrain model (profile.random_forget)", trainset=f"D-random{rf}-seed0"),
        c.train("tuning retrain without 'truck'", "cifar10", c.d - per_class, T, "tune() on the class tuning "
                "request (cell 'GRIDS')", trainset="D-class:truck"),
        c.train(f"tuning retrain without {rf} random images", "cifar10", c.d - rf, T, "tune() on the random "
                "tuning request (cell 'GRIDS')", trainset=f"D-random{rf}-seed{c.profile.tuning_seed}"),
    )
    evaluations = (
        Evaluation("run_methods: 7 methods on the class task + 6 on the random task", bench_name(r18),
                   _full_eval(c), 13 * len(S), "cell 'records' (original, retrain, mask_classes on the class, 4 "
                   "tuned baselines)"),
        Evaluation("tune(): 2 requests x (16 settings + the retrain reference), validation split", bench_name(r18),
                   per_class + 5_000, 2 * 17, "cell 'GRIDS' (4 methods x 4 settings)"),
    )
    return ChapterWorkload("foundations", S, trainings, evaluations,
                           "the unlearning runs (4 baselines x 4 settings on 2 tuning requests, then the chosen ones "
                           "on 2 tasks x seeds; 1-5 epochs over D_r or D_f each), the unlearning-seed cell and the "
                           "peeking cell")


def _ssd(c: _Ctx) -> ChapterWorkload:
    S, T, fine = c.seeds, c.tuning, c.d // 100  # a CIFAR-100 class (and a CIFAR-20 fine class): 450 images in D
    n_random = 83  # the chapter's N_RANDOM on paper
    subs = FINE_PER_SUPERCLASS
    trainings = (
        c.train("original, CIFAR-100", "cifar100", c.d, S + T, "cell 'rows, refs' (full-class task) and the "
                "tuning cell on the tuning seed", trainset="D"),
        c.train("retrain without 'rocket', CIFAR-100", "cifar100", c.d - fine, S, "cell 'rows, refs'",
                trainset="D-class:rocket"),
        c.train("tuning retrain without 'apple', CIFAR-100", "cifar100", c.d - fine, T, "tune() on TUNING['class']",
                trainset="D-class:apple"),
        c.train("original, CIFAR-20", "cifar20", c.d, S + T, "cell 'rows, refs' (one original serves every "
                "sub-class task) and tune() on TUNING['sub']", trainset="D"),
        c.train(f"retrain without one fine class of 'vehicles_2' (all {subs})", "cifar20", c.d - fine, S,
                "cell 'TASKS': every fine class of the superclass is a task", per_seed=subs),
        c.train("tuning retrain without fine class 'apple', CIFAR-20", "cifar20", c.d - fine, T,
                "tune() on TUNING['sub']", trainset="D-fine:apple"),
        c.train("retrain without fine class 'sea', CIFAR-20 (first seed)", "cifar20", c.d - fine, S[:1],
                "the last cell (another superclass)", trainset="D-fine:sea"),
        c.train("original, CIFAR-10", "cifar10", c.d, S + T, "cell 'rows, refs' (random task) and tune() on "
                "TUNING['random']", trainset="D"),
        c.train(f"retrain without {n_random} random images, CIFAR-10", "cifar10", c.d - n_random, S,
                "cell 'rows, refs'", trainset=f"D-random{n_random}-seed0"),
        c.train(f"tuning retrain without {n_random} random images, CIFAR-10", "cifar10", c.d - n_random, T,
                "tune() on TUNING['random']", trainset=f"D-random{n_random}-seed{c.profile.tuning_seed}"),
    )
    m = bench_name(c.profile.arch)
    evaluations = (
        Evaluation("run_methods: 12 methods on the CIFAR-100 class + 10 on the CIFAR-10 random task", m,
                   _full_eval(c), 22 * len(S), "cell 'records' (methods_for)"),
        Evaluation(f"run_methods, quick: 9 methods on each of the {subs} sub-class tasks", m, fine + CIFAR_TEST,
                   9 * subs * len(S), "cell 'records' (quick=True on sub-class tasks)"),
        Evaluation("tune(): 7 + 7 + 6 methods x 6 settings on 3 tuning requests, validation split", m,
                   fine + 5_000, 120, "cell 'BASELINE_GRIDS'"),
        Evaluation("alpha x lambda plane: 8 x 4 cells x 2 methods x 3 requests, validation split", m, fine + 5_000,
                   192, "cell 'ALPHAS, LAMS'"),
    )
    return ChapterWorkload("ssd", S, trainings, evaluations,
                           "the unlearning runs and SSD/LFSSD's importance passes (each reads D once with gradients, "
                           "about one training epoch: 9 precomputations for tuning, several per task and seed, and "
                           "the estimator and order ablations), UNSIR and Bad Teacher")


def _classlevel(c: _Ctx) -> ChapterWorkload:
    S, T, per_class = c.seeds, c.tuning, c.d // 10
    m = bench_name(c.profile.arch)
    trainings = (
        c.train("original, CIFAR-10", "cifar10", c.d, S + T, "cell 'rows, refs' and tune_few_shot() on the "
                "tuning seed (original only)", trainset="D"),
        c.train("retrain without 'automobile'", "cifar10", c.d - per_class, S, "cell 'rows, refs' (one class)",
                trainset="D-class:automobile"),
        c.train("retrain without 'cat', 'automobile', 'ship'", "cifar10", c.d - 3 * per_class, S,
                "cell 'rows, refs' (three classes)", trainset="D-class:automobile,cat,ship"),
    )
    evaluations = (
        Evaluation("run_methods: 10 methods on 2 tasks", m, _full_eval(c), 20 * len(S), "cell 'records'"),
        Evaluation("budget sweep, quick: 4 budgets x 7 methods, one class", m, per_class + CIFAR_TEST, 28 * len(S),
                   "cell 'SWEEP'"),
        Evaluation("budget sweep, quick: 4 budgets x 7 methods, three classes", m, 3 * per_class + CIFAR_TEST,
                   28 * len(S), "cell 'SWEEP'"),
    )
    return ChapterWorkload("classlevel", S, trainings, evaluations,
                           "the unlearning runs (fine-tuning up to 100 epochs over the few-shot budget), the "
                           "few-shot tuning (42 runs) and the epochs x fraction cell")


def _l2ul(c: _Ctx) -> ChapterWorkload:
    S, T, pool = c.seeds, c.tuning, 128
    m = bench_name(c.profile.arch)
    trainings = (
        c.train("original, CIFAR-10", "cifar10", c.d, S + T, "cell 'rows, refs' and the tuning request's "
                "original (retrain=False)", trainset="D"),
        c.train(f"retrain without the {pool}-image pool", "cifar10", c.d - pool, S, "cell 'rows, refs' (one pool "
                "per seed)", trainset=f"D-pool{pool}"),
    )
    evaluations = (
        Evaluation("quick evaluations with D_r: main 7 + ablations 5 + sweep 6 k x 4", m, _full_eval(c),
                   36 * len(S), "run_requests in the main, ablation and sweep cells"),
    )
    return ChapterWorkload("l2ul", S, trainings, evaluations,
                           "L2UL itself, which on paper runs the official uncapped budget (20 adversarial examples x "
                           "100 PGD steps per forgotten image, up to 1,000 passes over them): 4 variants x seeds, 5 "
                           "ablations, the sweep up to k = 128 and 8 continual requests. It is likely to dominate")


def _mixed_privacy(c: _Ctx) -> ChapterWorkload:
    S, T = c.seeds, c.tuning
    core_fraction, user_max, finetune_epochs = 0.5, 20_000, 10  # the chapter's SETTINGS['paper']
    core = round(core_fraction * c.d)
    arch = {"resnet18-cifar": "resnet18-cifar-leaky"}.get(c.profile.arch, c.profile.arch)  # CORE_ARCH
    m = bench_name(arch)
    recipe = c.profile.recipe_for("cifar10")
    trainings = (
        c.train("core network (leaky ResNet-18) on the core half", "cifar10", core, S + T,
                "core_model() per seed (cell 'accuracy_rows') and on the tuning seed (cell 'regimes')", arch=arch,
                trainset=f"core{core_fraction}"),
        c.train(f"fine-tune all on the user data ({finetune_epochs} epochs, at most {user_max:,} images)", "cifar10",
                user_max, S, "cell 'accuracy_rows' (train_model on user_idx)", arch=arch,
                recipe=recipe.replace(epochs=finetune_epochs)),
    )
    evaluations = (
        Evaluation("accuracy table: 4 models x (test + user data)", m, CIFAR_TEST + user_max, 4 * len(S),
                   "cell 'accuracy_rows'"),
        Evaluation("forgetting readouts: 7 models x (2,000 remaining + forgotten + test)", m,
                   2_000 + user_max // 10 + CIFAR_TEST, 7 * len(S), "readouts() in cell 'forget_rows'"),
    )
    return ChapterWorkload("mixed_privacy", S, trainings, evaluations,
                           "the mixed-linear fits and unlearning (conjugate gradient up to 2,000 iterations, each a "
                           "Jacobian-vector pass over the user data, for 2 user sizes x 3 mus on the tuning seed and "
                           "per seed; the 50-epoch SGD retrain; re-learning steps; Fisher forgetting): likely the "
                           "dominant cost. Evaluations of linearised models are counted at the plain network's speed")


def _rem(c: _Ctx) -> ChapterWorkload:
    from .experiment import REGULARITY, corruption_benchmark

    S, T = c.seeds, c.tuning
    cfg = corruption_benchmark(c.profile)
    corruptions, n, rates = len(REGULARITY), cfg["n_corrupt"], cfg["rates"]
    kw = dict(arch=cfg["arch"], recipe=cfg["recipe"])
    trainings = (
        c.train(f"original on corrupted CIFAR-10 ({corruptions} corruptions)", "cifar10", c.d, S, "run_discovery_grid: "
                "one original per corruption and seed", per_seed=corruptions, trainset=CORRUPTED, **kw),
        c.train(f"tuning original on corrupted CIFAR-10 ({corruptions} corruptions)", "cifar10", c.d, T,
                "tune_corrupted() on the tuning requests", per_seed=corruptions, trainset=CORRUPTED, **kw),
        *(c.train(f"retrain without the {rate:.0%} found ({corruptions} corruptions)", "cifar10",
                  c.d - round(rate * n), S, "run_discovery_grid: one retrain per corruption, seed and rate",
                  per_seed=corruptions, trainset=f"{CORRUPTED}-found{rate:g}", **kw) for rate in rates),
    )
    m = bench_name(cfg["arch"])
    methods = 11  # original, retrain, refuse_instances and the 8 tuned methods of BASE; suppress_target: trigger only
    evaluations = (
        Evaluation("corruption_metrics: (3 x 11 + 1) methods x rates", m, _corruption_eval(cfg, rates),
                   (corruptions * methods + 1) * len(rates) * len(S), "run_discovery_grid (healed set, test, "
                   "found part; the trigger's stamped test split)"),
        Evaluation("tune_corrupted(): 8 methods x 3 settings x 3 requests", m, 5_000 + n, 72,
                   "cell 'tuning' (validation split and healed set)"),
    )
    return ChapterWorkload("rem", S, trainings, evaluations,
                           "the unlearning runs (8 methods x 3 settings x 3 tuning requests, then 8 methods x 3 "
                           "corruptions x 10 rates x seeds; REM and SCRUB run 10 rounds, NPO up to 10 epochs) and "
                           "the ablation cells")


def _comparison(c: _Ctx) -> ChapterWorkload:
    from .experiment import REGULARITY, corruption_benchmark

    S, T, rf, per_class, k = c.seeds, c.tuning, c.profile.random_forget, c.d // 10, 16
    cfg = corruption_benchmark(c.profile)
    rate = 0.25 if 0.25 in cfg["rates"] else cfg["rates"][0]  # the chapter's RATE
    corruptions, kw = len(REGULARITY), dict(arch=cfg["arch"], recipe=cfg["recipe"])
    trainings = (
        c.train("original, CIFAR-10", "cifar10", c.d, S + T, "standard_runner -> run_methods, and tune() on the "
                "tuning seed", trainset="D"),
        c.train("retrain without 'automobile'", "cifar10", c.d - per_class, S, "class task",
                trainset="D-class:automobile"),
        c.train(f"retrain without {rf} random images", "cifar10", c.d - rf, S, "random task",
                trainset=f"D-random{rf}-seed0"),
        c.train(f"retrain without {k} instances of the seed's pool", "cifar10", c.d - k, S, "k_request(seed)"),
        c.train("tuning retrain without 'truck'", "cifar10", c.d - per_class, T, "tune() on TUNING['class']",
                trainset="D-class:truck"),
        c.train(f"tuning retrain without {rf} random images", "cifar10", c.d - rf, T, "tune() on TUNING['random']",
                trainset=f"D-random{rf}-seed{c.profile.tuning_seed}"),
        c.train(f"tuning retrain without {k} instances of the tuning pool", "cifar10", c.d - k, T,
                "tune() on TUNING['k']"),
        c.train(f"original on corrupted CIFAR-10 ({corruptions} corruptions)", "cifar10", c.d, S,
                "corrupted_runner -> run_discovery_grid", per_seed=corruptions, trainset=CORRUPTED, **kw),
        c.train(f"retrain without the {rate:.0%} found ({corruptions} corruptions)", "cifar10",
                c.d - round(rate * cfg["n_corrupt"]), S, f"corrupted_runner at RATE = {rate:g}",
                per_seed=corruptions, trainset=f"{CORRUPTED}-found{rate:g}", **kw),
        c.train(f"tuning original on corrupted CIFAR-10 ({corruptions} corruptions)", "cifar10", c.d, T,
                "tune_corrupted() (reused from the REM chapter when it ran)", per_seed=corruptions,
                trainset=CORRUPTED, **kw),
    )
    m, m9 = bench_name(c.profile.arch), bench_name(cfg["arch"])
    evaluations = (
        Evaluation("run_methods: 16 + 14 + 14 methods on the class, random and k tasks", m, _full_eval(c),
                   44 * len(S), "PLAN (standard_plan)"),
        Evaluation("corruption_metrics: 15 methods x 3 corruptions (+ suppress_target on the trigger)", m9,
                   _corruption_eval(cfg, [rate]), (15 * corruptions + 1) * len(S), "PLAN (corrupted tasks: original, "
                   "retrain, refuse_instances and CORRUPT_METHODS)"),
    )
    return ChapterWorkload("comparison", S, trainings, evaluations,
                           "the unlearning runs (10 tuned methods on 3 standard tasks, L2UL on k = 16 with the "
                           "official uncapped budget, 12 methods on 3 corrupted tasks), their tuning, SSD's importance "
                           "precomputation and the Fisher cost probe. Runs it can read from the foundations and REM "
                           "results are counted as if run here")


def _ulira(c: _Ctx) -> ChapterWorkload:
    S, rf = c.seeds, c.profile.random_forget
    memorised = 500  # the chapter's N_MEMORISED on paper
    methods = 13     # original, retrain, refuse_instances and the 10 methods read from the other chapters
    trainings = (
        c.train("original, CIFAR-10 (the attack's pool)", "cifar10", c.d, S, "model_scores on the random request "
                "(one original serves both requests)", trainset="D"),
        c.train(f"retrain without {rf} random images (the attack's pool)", "cifar10", c.d - rf, S,
                "model_scores on the random request", trainset=f"D-random{rf}-seed0"),
        c.train(f"retrain without the {memorised} most memorised images", "cifar10", c.d - memorised, S,
                "model_scores on the memorised request"),
    )
    evaluations = (
        Evaluation(f"quick metrics, loss attack and phi: {methods} methods x 2 requests", bench_name(c.profile.arch),
                   CIFAR_TEST + rf, 2 * methods * len(S), "model_scores (D_f and the test split per model)"),
    )
    return ChapterWorkload("ulira", S, trainings, evaluations,
                           "the unlearning runs (10 methods x 2 requests x the pool's seeds, with the settings of the "
                           "chapters that tuned them) and the attack itself (array operations)")


#: chapter -> how its workload is counted; the comparison chapter reports 5 seeds by default (its N_SEEDS), the
#: per-example attack chapter its pool of 17 attack seeds on paper
CHAPTER_WORKLOADS = {"foundations": (_foundations, None), "ssd": (_ssd, None), "classlevel": (_classlevel, None),
                     "l2ul": (_l2ul, None), "mixed_privacy": (_mixed_privacy, None), "rem": (_rem, None),
                     "ulira": (_ulira, range(1000, 1017)), "comparison": (_comparison, range(5))}


def paper_workload(seeds: Sequence[int] | None = None) -> dict[str, ChapterWorkload]:
    """Per chapter, what it trains and evaluates on the ``paper`` profile with ``seeds`` (default: the chapter's
    own, i.e. the profile's seeds, or 5 for the comparison), counted from the profile and the corruption benchmark."""
    return {name: build(_context(seeds, default)) for name, (build, default) in CHAPTER_WORKLOADS.items()}


def predict_chapter_seconds(chapter: str, throughput: Mapping[str, Throughput], *,
                            seeds: Sequence[int] | None = None) -> float:
    """Predicted seconds of ``chapter`` on the paper profile at ``throughput`` ({bench model: Throughput}):
    training plus evaluation passes of its :func:`paper_workload`; the unlearning methods are not included."""
    workloads = paper_workload(seeds)
    if chapter not in workloads:
        raise ValueError(f"no paper workload for chapter {chapter!r}; known: {', '.join(workloads)}")
    return sum(workloads[chapter].seconds(throughput))


def book_seconds(workloads: Mapping[str, ChapterWorkload], throughput: Mapping[str, Throughput]) -> float:
    """Predicted seconds of every chapter in one run sharing the checkpoint cache: a trained set with the same
    ``key`` and seed (e.g. the CIFAR-10 original) is trained once, by the first chapter that needs it."""
    done: set[tuple[str, int]] = set()
    total = 0.0
    for w in workloads.values():
        for t in w.trainings:
            fresh = [s for s in t.seeds if t.key is None or (t.key, s) not in done]
            done.update((t.key, s) for s in t.seeds if t.key is not None)
            total += t.per_seed * len(fresh) * t.epochs * t.images / throughput[t.model].train
        total += w.seconds(throughput)[1]
    return total


# ----------------------------------------------------------------------------------------------------------------
# Report and command line


def format_duration(seconds: float) -> str:
    """A duration as minutes, hours or days, whichever reads best."""
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def throughput_lines(throughput: Mapping[str, Throughput]) -> list[str]:
    """One line per model: images per second training and evaluating, the batch sizes used, and the training
    rate in GFLOP/s that this implies (from the counted FLOPs per image)."""
    specs = bench_models()
    lines = [f"{'model':<17} {'input':<8} {'train img/s':>11} {'batch':>6} {'eval img/s':>11} {'batch':>6} "
             f"{'train GFLOP/s':>13}  source"]
    for name, t in throughput.items():
        s = specs[name]
        mark = "*" if t.train_batch < s.recipe.batch_size else " "
        lines.append(f"{name:<17} {s.channels}x{s.image_size}x{s.image_size:<3} {t.train:>11,.1f} "
                     f"{t.train_batch:>5}{mark} {t.eval:>11,.1f} {t.eval_batch:>6} "
                     f"{t.train * t.train_flops / 1e9:>13,.1f}  {t.source}")
    if any(t.train_batch < specs[name].recipe.batch_size for name, t in throughput.items()):
        lines.append("* fewer images per step than the recipe's batch (the CPU plan keeps the bench short; a CPU's "
                     "throughput changes little with the batch size once a step is this large)")
    return lines


def prediction_lines(throughput: Mapping[str, Throughput], chapters: Sequence[str],
                     seeds: Sequence[int] | None = None) -> list[str]:
    """One PREDICTED line per chapter (training, evaluation, total) and the whole book with a shared cache."""
    workloads = paper_workload(seeds)
    lines = [f"{'chapter':<15} {'seeds':>5} {'models':>6} {'training':>11} {'evaluation':>11} {'total':>11}"]
    for chapter in chapters:
        if chapter not in workloads:
            lines.append(f"{chapter:<15} no paper workload counted for this chapter")
            continue
        w = workloads[chapter]
        train, evaluate = w.seconds(throughput)
        lines.append(f"{chapter:<15} {len(w.seeds):>5} {sum(t.count for t in w.trainings):>6} "
                     f"{format_duration(train):>11} {format_duration(evaluate):>11} "
                     f"{format_duration(train + evaluate):>11}")
    chosen = {c: workloads[c] for c in chapters if c in workloads}
    if len(chosen) > 1:
        lines.append(f"{'all of them, one run sharing the checkpoint cache':<52} "
                     f"{format_duration(book_seconds(chosen, throughput)):>11}")
    return lines


def workload_lines(seeds: Sequence[int] | None = None) -> list[str]:
    """The workload table: every training and evaluation entry of every chapter, with where it comes from."""
    lines = []
    for w in paper_workload(seeds).values():
        lines.append(f"{w.chapter} (seeds {', '.join(map(str, w.seeds))}):")
        for t in w.trainings:
            lines.append(f"  train {t.count:>3} x {t.model:<16} {t.epochs:>3} epochs x {t.images:>6,} images  "
                         f"{t.what}  [{t.source}]")
        for e in w.evaluations:
            lines.append(f"  eval  {e.count:>3} x {e.model:<16} {e.images:>6,} images  {e.what}  [{e.source}]")
        lines.append(f"  not included: {w.not_included}")
    return lines


#: A free Colab session: at most 12 hours, and often cut after fewer when the tab is idle (Colab's FAQ); the book
#: plans a chapter for this many hours of one session
COLAB_SESSION_HOURS = 4.0
PAPER_SCALE_START, PAPER_SCALE_END = "<!-- paper-scale: generated by unlearnlib.bench -->", "<!-- /paper-scale -->"


def paper_scale_markdown(chapter: str) -> str:
    """The predicted-time table of a chapter's "Running at paper scale" section, between the two markers
    :data:`PAPER_SCALE_START` and :data:`PAPER_SCALE_END` (a test keeps every chapter in sync with this function):
    the chapter's reported seeds and one seed, on the ASSUMED T4 and H100 throughputs, training and evaluation
    passes only, and whether it fits a free Colab session of :data:`COLAB_SESSION_HOURS` hours on the T4."""
    gpus = {g: assumed_throughput(g) for g in ("t4", "h100")}
    default = paper_workload()[chapter].seeds
    lines = [PAPER_SCALE_START, "",
             "| seeds | models trained | T4 (Colab), predicted | H100, predicted | fits one Colab session on a T4 |",
             "|---|---|---|---|---|"]
    for seeds in (default, default[:1]):
        w = paper_workload(seeds)[chapter]
        t4, h100 = (sum(w.seconds(gpus[g])) for g in ("t4", "h100"))
        fits = "yes" if t4 <= COLAB_SESSION_HOURS * 3600 else "no"
        lines.append(f"| {', '.join(map(str, seeds))} | {sum(t.count for t in w.trainings)} | "
                     f"{format_duration(t4)} | {format_duration(h100)} | {fits} |")
    lines += ["", f"*Predicted, not measured*: `python -m unlearnlib.bench` counts the models and images the chapter "
              f"trains and evaluates on `paper` and divides by ASSUMED throughputs of each GPU (counted FLOPs, an "
              f"assumed share of the datasheet peak and a per-step cost; `--assume t4 --assume h100` prints them). "
              f"The unlearning methods themselves are not included: {paper_workload()[chapter].not_included}. "
              f"`python -m unlearnlib.bench --device cuda` on your GPU measures instead; a free Colab session is "
              f"planned here as {COLAB_SESSION_HOURS:g} hours.", "", PAPER_SCALE_END]
    return "\n".join(lines)


def update_paper_scale(chapter: Path) -> bool:
    """Replace the generated block of ``chapter`` (a notebook whose "Running at paper scale" section holds the two
    markers) with :func:`paper_scale_markdown`, atomically; returns whether anything changed. Outputs and every
    other cell stay as they are."""
    import json
    import re

    from . import _io

    nb = json.loads(Path(chapter).read_text())
    pattern = re.compile(re.escape(PAPER_SCALE_START) + ".*?" + re.escape(PAPER_SCALE_END), re.S)
    changed = False
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown" and PAPER_SCALE_START in source:
            new = pattern.sub(lambda _: paper_scale_markdown(Path(chapter).stem), source)
            changed |= new != source
            cell["source"] = new.splitlines(keepends=True)
    if changed:
        _io.atomic_write(chapter, lambda f: f.write(json.dumps(nb, indent=1, ensure_ascii=False) + "\n"), mode="w")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unlearnlib.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps: a rougher measurement")
    parser.add_argument("--seeds", type=parse_seeds, help="reported seeds, e.g. 0 or 0,1 (default: each chapter's)")
    parser.add_argument("--assume", action="append", choices=sorted(ASSUMED_GPUS),
                        help="predict from ASSUMED throughputs of this GPU instead of measuring (repeatable)")
    parser.add_argument("--workload", action="store_true", help="also list what each chapter trains and evaluates")
    parser.add_argument("--write-chapters", action="store_true",
                        help="update the predicted-time block of every chapter's 'Running at paper scale' section")
    args = parser.parse_args(argv)
    from .toc import toc_chapters

    if args.write_chapters:
        for path in toc_chapters():
            print(f"{path.name}: {'updated' if update_paper_scale(path) else 'up to date'}")
        return 0

    chapters = [c.stem for c in toc_chapters()]
    runs = ([(f"ASSUMED {ASSUMED_GPUS[g].name} (not a measurement)", assumed_throughput(g)) for g in args.assume]
            if args.assume else [(_measured_label(args.device), measure_all(device=args.device, quick=args.quick))])
    for label, throughput in runs:
        print(f"throughput, {label}:")
        print("\n".join("  " + line for line in throughput_lines(throughput)))
        print(f"PREDICTED time of each chapter on the paper profile ({label}): training + evaluation passes only; "
              f"the unlearning methods are NOT included (see --workload)")
        print("\n".join("  " + line for line in prediction_lines(throughput, chapters, args.seeds)))
    for g in args.assume or []:
        print(f"assumptions for {g}: {ASSUMED_GPUS[g].why}")
    if args.workload:
        print("\n".join(workload_lines(args.seeds)))
    return 0


def _measured_label(device: str) -> str:
    """What the measurement ran on, for the report's header."""
    import torch

    from .training import hardware, resolve_device

    dev = resolve_device(device)
    hw = hardware()
    what = hw.get("gpu") if dev.type == "cuda" else f"{hw['processor']} CPU, {hw['torch_threads']} threads"
    return f"measured on {dev.type} ({what}), torch {torch.__version__}"


if __name__ == "__main__":
    sys.exit(main())
