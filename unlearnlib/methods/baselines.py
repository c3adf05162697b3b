"""Baselines every chapter compares against.

- ``original``: the trained model, untouched (the "do nothing" lower bound on forgetting).
- ``retrain``: a fresh model trained from scratch on D_r with the original recipe: the reference every method is
  measured against. Every layer is re-initialised (the SSD code's "retrain" resets only the last layer).
- ``finetune``: continue training on D_r only, so that D_f is forgotten through catastrophic forgetting.
- ``gradient_ascent``: maximise the loss on D_f (Thudi et al. 2022; "NegGrad").
- ``neggrad_plus``: descend on D_r and ascend on D_f together (Kurmanji et al. 2023, "NegGrad+").
- ``random_labels``: train on D_r together with D_f relabelled at random (Golatkar et al. 2020; Graves et al. 2021,
  "amnesiac"; the "RL" baseline of SalUn).
- ``npo``: Negative Preference Optimization on D_f alone (Zhang et al. 2024): gradient ascent made bounded by a
  frozen reference model; no retain data.
- ``scrub``: SCRUB (Kurmanji et al. 2023): a student that moves away from the original (teacher) on D_f and stays
  close to it, and to the labels, on D_r.
- ``bad_teacher``: Bad Teacher (Chundawat et al. 2023; "blindspot" in the SSD code): a student distilled from the
  original on part of D_r and from a randomly initialised "incompetent" teacher on D_f.
- ``unsir``: UNSIR (Tarun et al. 2023): error-maximising noise for the forgotten class(es), learnt on the frozen
  model, then one "impair" epoch on that noise mixed with retained samples and one "repair" epoch on those samples;
  class and sub-class tasks only.
- ``salun``: SalUn (Fan et al., ICLR 2024): random labelling (as ``random_labels``) that updates only the weights
  most salient for D_f, the top ``sparsity`` share of the absolute gradient of the forget loss; a baseline of REM.
- ``fisher``: Fisher forgetting (Golatkar et al. 2020): Gaussian noise on every weight, scaled by the inverse of the
  diagonal Fisher information on D_r, shaped as in the official code; the baseline of the mixed-privacy paper.

Trivial baselines (no training, 0 s), so that a reader sees what a method adds beyond them:

- ``mask_classes``: the original with the forgotten classes' logits set to a large negative value. For a class
  task that is the class; for a sub-class task it is the whole superclass (a logit cannot tell the fine classes
  apart), which shows what a sub-class method must beat.
- ``suppress_target``: the original that never predicts one class, the target of a trigger (backdoor) by default.
- ``refuse_instances``: the original with a lookup in front: the exact training images of an instance request get
  their label's logit masked (so the runner-up wins), every other input is untouched. It meets an instance-wise goal
  such as L2UL's ("every forget instance misclassified") at no cost, which shows what that goal does not measure.
"""
from __future__ import annotations

import contextlib
import copy
import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models import InstanceFilter, MaskedLogits, fresh_copy
from ..training import Recipe, accuracy, batches, make_optimizer, noise_generator, set_seed, train_model
from .registry import not_finite, register, report_divergence


@register("original", paper="no unlearning")
def original(model: nn.Module, task, *, seed: int = 0, device="cpu") -> nn.Module:
    """Return the original model unchanged (a copy)."""
    return model


@register("mask_classes", paper="trivial baseline: mask the forgotten classes' logits")
def mask_classes(model: nn.Module, task, *, seed: int = 0, device="cpu", value: float = -1e4) -> nn.Module:
    """Never predict the forgotten classes: their logits become ``value``; the others are left bitwise unchanged."""
    if task.kind == "full_class":
        classes = task.forget_classes
    elif task.kind == "sub_class":
        classes = [task.params["superclass"]]
    else:
        raise ValueError(f"mask_classes needs a class or sub-class task, got a {task.kind!r} task: there is no class to "
                         f"mask. The trivial baseline there is 'original' (do nothing)")
    return MaskedLogits(model, classes, task.num_classes, value)


@register("suppress_target", paper="trivial baseline: never predict the trigger's target class")
def suppress_target(model: nn.Module, task, *, seed: int = 0, device="cpu", target_class: int | str | None = None,
                    value: float = -1e4) -> nn.Module:
    """Never predict ``target_class`` (by default a trigger task's target): its logit becomes ``value``."""
    if target_class is None:
        if task.kind != "corrupted" or "target_class" not in task.params:
            raise ValueError(f"suppress_target needs a trigger task (tasks.corrupted(..., 'trigger')) or an explicit "
                             f"target_class=...; got a {task.kind!r} task without a target")
        target = task.params["target_class"]
    else:
        target = task.data.class_index(target_class)
    return MaskedLogits(model, [target], task.num_classes, value)


@register("refuse_instances", paper="trivial baseline: refuse to recognise the exact forget instances")
def refuse_instances(model: nn.Module, task, *, seed: int = 0, device="cpu", value: float = -1e4) -> nn.Module:
    """Misclassify exactly the forget set's training images (their label's logit becomes ``value``); every other
    input, including a copy of a forget image that differs in one pixel, gets the original's logits."""
    if len(task.forget_idx) == 0:
        raise ValueError("the forget set is empty: there is nothing to refuse")
    idx = torch.as_tensor(task.forget_idx, dtype=torch.long)
    x = task.data.normalize(task.data.x_train[idx])
    return InstanceFilter(model, x, task.data.y_train[idx], value=value).to(device)


@register("retrain", paper="exact unlearning by retraining from scratch")
def retrain(model: nn.Module, task, *, seed: int = 0, device="cpu", recipe: Recipe | None = None,
            progress: bool = True) -> nn.Module:
    """Train a freshly initialised copy of the architecture on D_r with ``recipe`` (the original's recipe)."""
    if recipe is None:
        raise ValueError("retrain needs recipe=..., the recipe the original model was trained with "
                         "(e.g. profile.recipe)")
    fresh = fresh_copy(model, seed=seed).to(device)
    return train_model(fresh, task.data, task.retain_idx, recipe, seed=seed, device=device,
                       desc="retrain", progress=progress)


@register("finetune", paper="catastrophic forgetting baseline")
def finetune(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 2, lr: float = 0.01,
             batch_size: int = 128, momentum: float = 0.9, weight_decay: float = 5e-4, bn: str = "train") -> nn.Module:
    """Fine-tune on D_r only (SGD, cosine schedule) so that D_f fades. ``bn="eval"`` keeps BatchNorm on its running
    statistics (neither used from the batch nor updated), as a few-shot method must when its batches are tiny."""
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                    schedule="cosine")
    with _batchnorm_mode(model, bn):
        return train_model(model, task.data, task.retain_idx, recipe, seed=seed, device=device, desc="finetune")


@contextlib.contextmanager
def _batchnorm_mode(model: nn.Module, bn: str):
    """``bn="train"``: nothing changes. ``bn="eval"``: the model's BatchNorm layers stay in eval mode while the
    block runs, whatever ``model.train()`` is called inside it."""
    if bn not in ("train", "eval"):
        raise ValueError(f"bn must be 'train' or 'eval', got {bn!r}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if bn == "eval" else []
    for m in norms:
        m.eval()
        m.train = lambda mode=True, _m=m: _m
    try:
        yield
    finally:
        for m in norms:
            del m.train


@register("gradient_ascent", paper="Thudi et al. 2022 (NegGrad)")
def gradient_ascent(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 1, lr: float = 1e-3,
                    batch_size: int = 128, max_grad_norm: float = 5.0) -> nn.Module:
    """Maximise the cross-entropy on D_f with plain SGD (gradients clipped, since the loss is unbounded)."""
    set_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    step = 0
    for epoch in range(epochs):
        for x, y in batches(task.data, task.forget_idx, batch_size, shuffle=True, seed=seed * 1000 + epoch,
                            device=device):
            step += 1
            opt.zero_grad(set_to_none=True)
            loss = -F.cross_entropy(model(x), y)
            if not_finite(loss):
                return report_divergence(model, step, "non-finite loss")
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
    return _check_final_weights(model, step)


def _check_final_weights(model: nn.Module, step: int) -> nn.Module:
    """A step loop's last update is never followed by a loss to check: report the run as diverged at that ``step``
    when it left a weight that is not finite."""
    if not_finite(*(p.detach() for p in model.parameters())):
        return report_divergence(model, step, "non-finite weights after the last step")
    return model


@register("neggrad_plus", paper="Kurmanji et al. 2023 (NeurIPS), NegGrad+")
def neggrad_plus(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 1, lr: float = 0.01,
                 alpha: float = 0.95, batch_size: int = 128, max_grad_norm: float = 5.0, bn: str = "train") -> nn.Module:
    """Minimise alpha * CE(D_r batch) - (1 - alpha) * CE(D_f batch), cycling through D_f alongside D_r.
    ``bn="eval"`` keeps BatchNorm on its running statistics (see :func:`finetune`)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    with _batchnorm_mode(model, bn):
        return _neggrad_plus(model, task, seed=seed, device=device, epochs=epochs, lr=lr, alpha=alpha,
                             batch_size=batch_size, max_grad_norm=max_grad_norm)


def _neggrad_plus(model, task, *, seed, device, epochs, lr, alpha, batch_size, max_grad_norm) -> nn.Module:
    set_seed(seed)
    steps = epochs * int(np.ceil(len(task.retain_idx) / batch_size))
    opt, sched = make_optimizer(model, Recipe(epochs=epochs, lr=lr, schedule="cosine", batch_size=batch_size),
                                steps)
    model.train()
    step = 0
    for epoch in range(epochs):
        forget = itertools.cycle(list(batches(task.data, task.forget_idx, batch_size, shuffle=True,
                                              seed=seed * 1000 + epoch + 500, device=device)))
        for (xr, yr), (xf, yf) in zip(batches(task.data, task.retain_idx, batch_size, shuffle=True,
                                              seed=seed * 1000 + epoch, device=device), forget):
            step += 1
            opt.zero_grad(set_to_none=True)
            loss = alpha * F.cross_entropy(model(xr), yr) - (1 - alpha) * F.cross_entropy(model(xf), yf)
            if not_finite(loss):
                return report_divergence(model, step, "non-finite loss")
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
            sched.step()
    return _check_final_weights(model, step)


@register("random_labels", paper="Golatkar et al. 2020; Graves et al. 2021 (amnesiac)")
def random_labels(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 1, lr: float = 0.01,
                  batch_size: int = 128, weight_decay: float = 5e-4) -> nn.Module:
    """Train on D_r together with D_f relabelled with uniformly random *wrong* labels."""
    return _train_with_random_labels(model, task, seed=seed, device=device, epochs=epochs, lr=lr,
                                     batch_size=batch_size, weight_decay=weight_decay)


def _train_with_random_labels(model: nn.Module, task, *, seed: int, device, epochs: int, lr: float, batch_size: int,
                              weight_decay: float) -> nn.Module:
    """``random_labels`` on the model it is given, in place (the registered method works on a copy; SalUn calls
    this on the model whose gradients it masks)."""
    gen = torch.Generator().manual_seed(seed)
    labels = task.data.y_train.clone()
    f = torch.from_numpy(task.forget_idx)
    shift = torch.randint(1, task.num_classes, (len(f),), generator=gen)
    labels[f] = (labels[f] + shift) % task.num_classes
    both = np.concatenate([task.retain_idx, task.forget_idx])
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, schedule="cosine")
    return train_model(model, task.data, both, recipe, seed=seed, device=device, desc="random labels",
                       labels=labels)


def saliency_mask(model: nn.Module, data, indices, *, sparsity: float = 0.5, batch_size: int = 128,
                  device="cpu") -> dict[str, torch.Tensor]:
    """SalUn's weight saliency: the absolute value of the gradient of the summed cross-entropy on ``indices`` (the
    forget set, with the labels it was trained on), and a 0/1 mask that is 1 on the ``sparsity`` share of the *live*
    weights, those whose gradient is not exactly 0 (ranked together, across layers), where it is largest.

    Weights with a zero gradient (dead units, or the held-back extra capacity of a capacity model, which is most of
    its weights) are never salient and do not count in the share: ranking all weights would put the threshold at 0
    once more than ``1 - sparsity`` of them are dead, and the mask would then hold every live weight, which makes
    SalUn plain random labelling. Ties at the threshold are all kept. BatchNorm runs on its running statistics."""
    if not 0 < sparsity <= 1:
        raise ValueError(f"sparsity must be in (0, 1], got {sparsity}")
    return mask_from_gradients(forget_gradients(model, data, indices, batch_size=batch_size, device=device),
                               sparsity)


def forget_gradients(model: nn.Module, data, indices, *, batch_size: int = 128,
                     device="cpu") -> dict[str, torch.Tensor]:
    """The gradient of the summed cross-entropy on ``indices`` for every trainable weight, BatchNorm in eval mode."""
    if len(indices) == 0:
        raise ValueError("the saliency mask needs at least one forget sample")
    model.eval()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = {n: torch.zeros_like(p) for n, p in params}
    for x, y in batches(data, indices, batch_size, device=device):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y, reduction="sum").backward()
        for n, p in params:
            if p.grad is not None:
                grads[n] += p.grad
    model.zero_grad(set_to_none=True)
    return grads


def mask_from_gradients(grads: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """1 on the ``sparsity`` share of the live (non-zero) entries of ``grads`` with the largest magnitude, else 0."""
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    live = flat[flat != 0]
    if live.numel() == 0:
        raise ValueError("no weight receives a gradient from the forget loss, so none is salient; check that the "
                         "model's output depends on its trainable weights")
    keep = max(1, int(round(sparsity * live.numel())))
    threshold = torch.topk(live, keep, sorted=True).values[-1]   # > 0: ranked among the live weights only
    return {n: (g.abs() >= threshold).float() for n, g in grads.items()}


@register("salun", paper="Fan et al., ICLR 2024 (SalUn: saliency-based unlearning)")
def salun(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 1, lr: float = 0.01,
          batch_size: int = 128, weight_decay: float = 5e-4, sparsity: float = 0.5) -> nn.Module:
    """Random labelling on D_f (uniformly random *wrong* labels) together with D_r, where only the salient weights
    (:func:`saliency_mask`: the ``sparsity`` share of the weights that receive a forget-loss gradient) receive
    gradient; weight decay still applies to every weight, as in the official code, which multiplies the gradients by
    the mask before the optimizer step. ``unlearn_info`` records ``salient_share`` (the share of the live weights in
    the mask), ``salient_share_all`` (its share of all weights) and ``live_share`` (the share of weights that are
    live)."""
    model.to(device)
    if not 0 < sparsity <= 1:
        raise ValueError(f"sparsity must be in (0, 1], got {sparsity}")
    grads = forget_gradients(model, task.data, task.forget_idx, batch_size=batch_size, device=device)
    mask = mask_from_gradients(grads, sparsity)
    n_live = float(sum((g != 0).sum() for g in grads.values()))
    hooks = [p.register_hook(lambda g, m=mask[n]: g * m) for n, p in model.named_parameters() if n in mask]
    try:
        model = _train_with_random_labels(model, task, seed=seed, device=device, epochs=epochs, lr=lr,
                                          batch_size=batch_size, weight_decay=weight_decay)
    finally:
        for h in hooks:
            h.remove()
    selected, n_all = float(sum(m.sum() for m in mask.values())), float(sum(m.numel() for m in mask.values()))
    model.unlearn_info = {"salient_share": selected / n_live, "salient_share_all": selected / n_all,
                          "live_share": n_live / n_all}
    return model


def npo_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Per-sample NPO loss ``-(2/beta) log sigmoid(beta (CE - CE_ref))``: minimising it raises the model's loss on
    these samples above the frozen reference's, and it flattens out once it is well above (unlike gradient ascent,
    whose loss is unbounded)."""
    gap = F.cross_entropy(logits, labels, reduction="none") - F.cross_entropy(ref_logits, labels, reduction="none")
    return -(2.0 / beta) * F.logsigmoid(beta * gap)


def selection_proxy(model: nn.Module, task, *, gamma: float, device) -> tuple[float, float, float]:
    """The REM benchmark's model-selection score, from the available data only and with the labels as given (no clean
    data): ``acc(D_r) x (1 - max(acc(D_f), gamma))``. REM and the benchmark's NPO baseline pick a pass with it.
    Returns (proxy, acc_r, acc_f)."""
    acc_r = accuracy(model, task.data, task.retain_idx, split="train", device=device)
    acc_f = accuracy(model, task.data, task.forget_idx, split="train", device=device)
    return acc_r * (1 - max(acc_f, gamma)), acc_r, acc_f


@register("npo", paper="Zhang et al. 2024, Negative Preference Optimization")
def npo(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 10, lr: float = 0.005,
        beta: float = 1.0, stop_acc: float = 0.2, batch_size: int = 512, weight_decay: float = 5e-4,
        select: str = "proxy", augment: bool = False) -> nn.Module:
    """NPO on D_f with the original as the frozen reference (SGD, momentum 0.9), as the REM benchmark's NPO
    baseline runs it: at least one pass over D_f and at most ``epochs``, stopping before a pass once the accuracy on
    D_f is at most ``stop_acc``. ``select="proxy"`` keeps the pass with the best :func:`selection_proxy` (gamma =
    ``stop_acc``; the original itself is not a candidate), ``"last"`` the last pass.

    A non-finite loss stops the run, which is reported as diverged (:func:`~unlearnlib.methods.report_divergence`);
    a pass whose outputs are not finite (its proxy is NaN) is never selected and stops the run the same way."""
    if select not in ("proxy", "last"):
        raise ValueError(f"select must be 'proxy' or 'last', got {select!r}")
    _check_positive("epochs", epochs, integer=True)
    set_seed(seed)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    best, best_state, best_epoch, epochs_run, acc_f, step = -1.0, None, 0, 0, None, 0
    diverged = None   # (step, reason) of the first non-finite loss or output
    while epochs_run < epochs and (acc_f is None or acc_f > stop_acc):  # the first pass is always made
        model.train()
        for x, y in batches(task.data, task.forget_idx, batch_size, shuffle=True, seed=seed * 1000 + epochs_run,
                            device=device, augment=augment):
            step += 1
            with torch.no_grad():
                ref_logits = ref(x)
            opt.zero_grad(set_to_none=True)
            loss = npo_loss(model(x), ref_logits, y, beta).mean()
            if not_finite(loss):
                diverged = (step, "non-finite loss")
                break
            loss.backward()
            opt.step()
        if diverged:
            break
        epochs_run += 1
        if select == "proxy":  # the proxy's accuracy on D_f is also the stopping rule's
            proxy, _, acc_f = selection_proxy(model, task, gamma=stop_acc, device=device)
            if not np.isfinite(proxy):   # NaN outputs: never a candidate
                diverged = (step, "non-finite outputs")
                break
            if proxy > best:
                best, best_state, best_epoch = proxy, copy.deepcopy(model.state_dict()), epochs_run
        elif epochs_run < epochs:
            acc_f = accuracy(model, task.data, task.forget_idx, split="train", device=device)
    if select == "proxy" and best_state is not None:
        model.load_state_dict(best_state)
    model.unlearn_info = {"epochs": epochs_run, "selected_epoch": best_epoch if select == "proxy" else epochs_run}
    if diverged:
        return report_divergence(model, *diverged)
    return _check_final_weights(model, step)


def _linear_warmup_decay(step: int, total: int) -> float:
    """The REM code's LR factor: linear warm-up over the first 1 % of the steps, then a linear decay that would
    reach 0 at 1.25 x ``total`` (so the last step runs at about 0.2 x the peak)."""
    warm = max(1, total // 100)
    if step < warm:
        return (step + 1) / (warm + 1)
    return max(0.0, 1 - (step - warm) / (1.25 * total))


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """SCRUB's distance: KL(teacher || student) of the softmaxes at ``temperature``, times T^2 (as Hinton et al.'s
    distillation and SCRUB's ``DistillKL``), averaged over the batch."""
    return F.kl_div(F.log_softmax(student_logits / temperature, 1), F.softmax(teacher_logits / temperature, 1),
                    reduction="batchmean") * temperature ** 2


#: SCRUB's learning rates to tune over: the official one (5e-4, SGD, the authors' large-scale notebook, whose max
#: steps run at the same rate) and lower ones. Measured with the official defaults on the smoke full-class tuning
#: request (Sandal, tuning seed 100): every rate up to 1e-2 stayed finite, 5e-2 diverged at step 8 (in the first max
#: pass); at 5e-4 the remaining classes' validation accuracy fell from 0.815 to 0.647, at 2e-4 it was 0.803.
SCRUB_LRS = (5e-5, 1e-4, 2e-4, 5e-4)
#: the official code's step schedule: the rate is multiplied by 0.1 after each of these (1-based) epochs
SCRUB_LR_DECAY_EPOCHS = (3, 5, 9)
SCRUB_SCHEDULES = ("official", "rem")


def scrub_grid(lrs=SCRUB_LRS, **fixed) -> list[dict]:
    """A SCRUB tuning grid over ``lrs`` (by default :data:`SCRUB_LRS`: the official rate and lower ones), with the
    other hyperparameters ``fixed``."""
    return [{**fixed, "lr": lr} for lr in lrs]


def _scrub_lr_factor(schedule: str, step: int, epoch: int, total: int) -> float:
    """The factor on SCRUB's base rate at ``step`` (0-based, over all passes) in 0-based ``epoch``."""
    if schedule == "rem":
        return _linear_warmup_decay(step, total)
    return 0.1 ** sum(epoch + 1 > d for d in SCRUB_LR_DECAY_EPOCHS)


def _scrub_selection_images(task) -> np.ndarray:
    """The validation images SCRUB's model selection reads: those of what remains (``task.val_retain_idx``: on a class
    task the forgotten class's images are left out, since scoring them would reward keeping the class)."""
    return np.asarray(task.val_retain_idx, np.int64)


@register("scrub", paper="Kurmanji et al. 2023 (NeurIPS), SCRUB")
def scrub(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 3, max_epochs: int = 2,
          lr: float = 5e-4, alpha: float = 0.001, gamma: float = 0.99, temperature: float = 4.0,
          batch_size: int = 128, forget_batch_size: int = 32, weight_decay: float = 5e-4, max_loss: str = "kl",
          schedule: str = "official", select: str = "validation") -> nn.Module:
    """SCRUB: ``epochs`` "min" passes over D_r on ``gamma`` CE + ``alpha`` T^2 KL(teacher || student), the first
    ``max_epochs`` of them each preceded by a "max" pass over D_f that pushes the student away from the teacher (the
    original): ``max_loss="kl"`` ascends T^2 KL, as SCRUB's own code does; ``"ce+kl"`` ascends CE + ``alpha`` T^2
    KL, as the REM benchmark's copy does.

    Defaults are the authors' (github.com/meghdadk/SCRUB, ``large_scale_unlearning.ipynb``, CIFAR): SGD with
    momentum 0.9, lr 5e-4 for both the max and the min steps, weight decay 5e-4, 3 epochs of which the first 2 have a
    max pass (``msteps``), gamma 0.99, alpha 0.001, T 4, batches of 128 on D_r and 32 on D_f. ``schedule="official"``
    is their step schedule (x0.1 after epochs 3, 5 and 9, so constant over 3 epochs); ``"rem"`` the REM code's
    (linear warm-up over 1 % of the steps, then linear decay to about 0.2 x). Neither clips gradients (the official
    loop defines ``clip=0.2`` but its clipping call is commented out) nor smooths.

    What keeps the ascent bounded: nothing but the step size. The gradient of T^2 KL with respect to the student's
    logits is ``T (p_s - p_t)`` per sample (divided by the batch), so it is bounded, but the max pass follows it
    without limit, so a large enough rate runs away (on the smoke data 5e-2 did; the comparison chapter's chosen
    rate gave non-finite outputs on its larger data; see :data:`SCRUB_LRS`). A non-finite loss or validation output
    stops the run, which is then reported
    as diverged (:func:`~unlearnlib.methods.report_divergence`), never scored.

    Departures from the official code: ``select="validation"`` keeps the pass (max or min) with the best accuracy on
    the validation images of what remains (``task.val_retain_idx``; the official code keeps the last epoch, the REM
    code picks on the test split); ``"last"`` keeps the last pass, as does a task without a validation split. The
    student trains in train mode (as the official code), the teacher in eval mode.
    """
    if max_epochs > epochs:
        raise ValueError(f"max_epochs ({max_epochs}) cannot exceed epochs ({epochs})")
    if max_loss not in ("kl", "ce+kl"):
        raise ValueError(f"max_loss must be 'kl' (SCRUB) or 'ce+kl' (the REM benchmark's copy), got {max_loss!r}")
    if select not in ("validation", "last"):
        raise ValueError(f"select must be 'validation' or 'last', got {select!r}")
    if schedule not in SCRUB_SCHEDULES:
        raise ValueError(f"schedule must be 'official' (SCRUB's step decay) or 'rem' (the REM code's warm-up and "
                         f"linear decay), got {schedule!r}")
    set_seed(seed)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    n_batches = lambda idx, size: -(-len(idx) // size)  # noqa: E731
    total = max_epochs * n_batches(task.forget_idx, forget_batch_size) + epochs * n_batches(task.retain_idx,
                                                                                              batch_size)
    val = _scrub_selection_images(task)
    select = select if len(val) else "last"
    best, best_state, best_pass, passes, step = -1.0, None, 0, 0, 0
    diverged = None   # (step, reason) of the first non-finite loss or validation output
    for epoch in range(epochs):
        parts = ([("max", task.forget_idx, forget_batch_size)] if epoch < max_epochs else []) + \
                [("min", task.retain_idx, batch_size)]
        for kind, idx, size in parts:
            model.train()
            order_seed = seed * 1000 + 2 * epoch + (kind == "min")
            for x, y in batches(task.data, idx, size, shuffle=True, seed=order_seed, device=device):
                for group in opt.param_groups:
                    group["lr"] = lr * _scrub_lr_factor(schedule, step, epoch, total)
                step += 1
                with torch.no_grad():
                    t = teacher(x)
                opt.zero_grad(set_to_none=True)
                logits = model(x)
                kl = distill_kl(logits, t, temperature)
                if kind == "max":
                    loss = -kl if max_loss == "kl" else -(F.cross_entropy(logits, y) + alpha * kl)
                else:
                    loss = gamma * F.cross_entropy(logits, y) + alpha * kl
                if not_finite(loss):
                    diverged = (step, "non-finite loss")
                    break
                loss.backward()
                opt.step()
            if diverged:
                break
            passes += 1
            if select == "validation":
                score = accuracy(model, task.data, val, split="train", device=device)
                if not np.isfinite(score):   # NaN outputs: never a candidate
                    diverged = (step, "non-finite outputs")
                    break
                if score > best:
                    best, best_state, best_pass = score, copy.deepcopy(model.state_dict()), passes
        if diverged:
            break
    if select == "validation" and best_state is not None:
        model.load_state_dict(best_state)
    model.unlearn_info = {"passes": passes, "selected_pass": best_pass if select == "validation" else passes,
                          "selected_on": select, "selection_images": int(len(val)) if select == "validation" else 0}
    if diverged:
        return report_divergence(model, *diverged)
    return _check_final_weights(model, step)


def _check_positive(name: str, value, *, integer: bool = False, hint: str = "") -> None:
    """Raise a clear ValueError unless ``value`` is a positive finite number (a positive whole number if
    ``integer``)."""
    ok = (isinstance(value, (int, np.integer)) and not isinstance(value, bool)) if integer else \
        (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
         and bool(np.isfinite(value)))
    if not ok or value <= 0:
        what = "a positive whole number" if integer else "a positive number"
        raise ValueError(f"{name} must be {what}{f' ({hint})' if hint else ''}, got {value!r}")


def bad_teacher_loss(student_logits: torch.Tensor, competent_logits: torch.Tensor,
                     incompetent_logits: torch.Tensor, is_forget: torch.Tensor,
                     temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) averaged over the batch, where the teacher distribution of a sample is the incompetent
    teacher's softmax for a forget sample (``is_forget`` true) and the competent teacher's softmax otherwise, all at
    ``temperature`` (no T^2 factor, as in the official code).

    The official code uses ``F.kl_div``'s default ``reduction="mean"``, i.e. this value divided by the number of
    classes; under Adam a constant factor on the loss changes (almost) nothing, so the proper batch mean is used."""
    flag = is_forget.to(student_logits.dtype).unsqueeze(1)
    target = flag * F.softmax(incompetent_logits / temperature, 1) + (1 - flag) * F.softmax(
        competent_logits / temperature, 1)
    return F.kl_div(F.log_softmax(student_logits / temperature, 1), target, reduction="batchmean")


@register("bad_teacher", paper="Chundawat et al. 2023 (AAAI), Bad Teacher ('blindspot' in the SSD code)")
def bad_teacher(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 1, lr: float = 1e-4,
                batch_size: int = 256, retain_fraction: float = 0.3, temperature: float = 1.0) -> nn.Module:
    """Bad Teacher: distil from the original on a random part of D_r and from a random-init model on D_f.

    The student (the model itself) learns, by KL divergence at ``temperature``, to copy two frozen teachers: the
    competent one (the original model) on a seeded random ``retain_fraction`` of D_r, and an incompetent one (a
    freshly initialised model of the same architecture) on all of D_f, the two mixed and shuffled together. The
    student so answers D_f like a model that never learnt anything, which removes what D_f taught it, while D_r keeps
    the original's knowledge, dark knowledge included. No labels are used, so it applies to every task kind.
    Defaults are the official ones (SSD code, from the Bad Teacher repository): 1 epoch, Adam lr 1e-4, batches of
    256, 30 % of D_r, temperature 1. The student trains in train mode (BatchNorm statistics update) and the teachers
    run in eval mode, as in the official script (whose model is never switched to eval).
    """
    _check_positive("epochs", epochs, integer=True)
    _check_positive("lr", lr)
    _check_positive("batch_size", batch_size, integer=True)
    _check_positive("temperature", temperature, hint="the softmax temperature of the KL; the official value is 1")
    if isinstance(retain_fraction, bool) or not isinstance(retain_fraction, (int, float)) \
            or not 0 < retain_fraction <= 1:
        raise ValueError(f"retain_fraction must be in (0, 1] (the share of D_r distilled from the original; the "
                         f"official value is 0.3), got {retain_fraction!r}")
    set_seed(seed)
    competent = copy.deepcopy(model).eval().requires_grad_(False)
    incompetent = fresh_copy(model, seed=seed).to(device).eval().requires_grad_(False)
    rng = np.random.default_rng(seed)
    n_retain = max(1, int(retain_fraction * len(task.retain_idx)))
    retain_part = np.sort(rng.choice(task.retain_idx, size=n_retain, replace=False))
    both = np.concatenate([task.forget_idx, retain_part])
    is_forget = torch.zeros(len(task.data.y_train), dtype=torch.long)  # per-sample flag, fed in place of labels
    is_forget[torch.from_numpy(task.forget_idx)] = 1
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for epoch in range(epochs):
        for x, flag in batches(task.data, both, batch_size, shuffle=True, seed=seed * 1000 + epoch, device=device,
                               labels=is_forget):
            with torch.no_grad():
                good, bad = competent(x), incompetent(x)
            opt.zero_grad(set_to_none=True)
            bad_teacher_loss(model(x), good, bad, flag, temperature).backward()
            opt.step()
    return model


#: noise-optimisation steps of the official code (SSD repository): 25 for a full-class task, 250 for a sub-class one
UNSIR_NOISE_STEPS = {"full_class": 25, "sub_class": 250}


def unsir_noise(model: nn.Module, label: int, shape: tuple[int, ...], *, steps: int, lr: float = 0.1,
                reg: float = 0.1, seed: int = 0, device="cpu") -> torch.Tensor:
    """Error-maximising noise for class ``label``: a batch of ``shape`` (N, C, H, W), in the model's normalised input
    space, drawn from N(0, 1) (seeded) and optimised by Adam for ``steps`` steps on
    ``-CE(model(noise), label) + reg * mean_i ||noise_i||^2`` (the squared L2 norm of each noise image, averaged over
    the batch, as in the official code). The model is frozen in eval mode and left unchanged (its gradients too)."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=gen).to(device).requires_grad_(True)
    target = torch.full((shape[0],), int(label), dtype=torch.long, device=device)
    opt = torch.optim.Adam([noise], lr=lr)
    for _ in range(steps):
        loss = -F.cross_entropy(model(noise), target) + reg * noise.pow(2).sum(dim=(1, 2, 3)).mean()
        (noise.grad,) = torch.autograd.grad(loss, [noise])
        opt.step()
    model.train(was_training)
    return noise.detach()


def _unsir_retained(task, per_class: int) -> np.ndarray:
    """Up to ``per_class`` retained training samples of every retained class, the first ones in index order as in the
    official code. Classes are the training labels for a class task and the fine classes for a sub-class task (the
    official sub-class code groups by fine class, so the forgotten superclass's other fine classes are kept)."""
    groups = task.data.y_train if task.kind == "full_class" else task.data.fine_train
    g = groups.numpy()[task.retain_idx]
    return np.sort(np.concatenate([task.retain_idx[g == c][:per_class] for c in np.unique(g)]))


@register("unsir", paper="Tarun et al. 2023 (IEEE TNNLS), UNSIR: error-maximising noise, impair then repair")
def unsir(model: nn.Module, task, *, seed: int = 0, device="cpu", lr: float = 1e-4, noise_batch: int = 32,
          noise_steps: int | None = None, noise_lr: float = 0.1, noise_reg: float = 0.1, noise_batches: int = 80,
          per_class: int = 500, impair_batch_size: int = 32, repair_batch_size: int = 128) -> nn.Module:
    """UNSIR: learn noise that maximises the forgotten class's loss, impair on it, then repair on retained samples.

    1. Noise: for each forgotten class, ``noise_batch`` images of noise are optimised against the frozen model
       (:func:`unsir_noise`: Adam lr ``noise_lr``, regulariser ``noise_reg`` x mean squared L2 norm per image) for
       ``noise_steps`` steps (``None``: the official count, 25 for a class task and 250 for a sub-class task).
    2. Impair: one epoch (Adam lr ``lr``, train mode) over ``noise_batches`` copies of each noise batch, labelled
       with its class, shuffled together with up to ``per_class`` retained samples per retained class, in batches of
       ``impair_batch_size``: fitting noise that the model misclassifies as far as it can damages the weights that
       encode the class, and the retained samples anchor the rest.
    3. Repair: one epoch (a new Adam, lr ``lr``) on the same retained samples only, in batches of
       ``repair_batch_size``, to restore what the impair step hurt on the other classes.

    Defaults are those of the SSD code, which ran it for the SSD paper. For a sub-class task the model's labels are
    superclasses, and the official code labels the noise with the forgotten fine class's superclass (the training
    label of D_f, known from the class map, not read from the model's predictions) and collects the retained samples
    per fine class (500 each, the forgotten superclass's other fine classes included); so does this function.

    Departures from the official code, where it has quirks that are no part of the method: (a) each noise copy
    contributes all ``noise_batch`` images, as the method intends (the official loop, ``range(batch[0].size(0))``,
    adds only the first C images of each copy, C the number of channels: 240 noise images on CIFAR, 80 would be on
    Fashion-MNIST); (b) the noise is optimised with the model in eval mode (the official script never switches the
    loaded model to eval, so BatchNorm normalises the noise by its own batch statistics and its running statistics
    absorb the noise); (c) the gradients the noise steps leave on the model's parameters are not carried into the
    first impair step (there they are never zeroed); (d) several forgotten classes get one noise batch each (the
    original notebook's approach; the SSD code handles one class). Only class and sub-class tasks have a class for
    the noise; other kinds raise a ValueError.
    """
    if task.kind not in UNSIR_NOISE_STEPS:
        raise ValueError(f"unsir needs a full_class or sub_class task (its noise is learnt for the forgotten class), "
                         f"got a {task.kind!r} task, which has no class to forget. For sample-level forgetting use "
                         f"e.g. 'bad_teacher', 'scrub' or 'neggrad_plus'")
    steps = UNSIR_NOISE_STEPS[task.kind] if noise_steps is None else noise_steps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"noise_steps must be a whole number >= 0 (or None for the official 25 / 250), got "
                         f"{noise_steps!r}")
    for name, value in (("noise_batch", noise_batch), ("noise_batches", noise_batches), ("per_class", per_class),
                        ("impair_batch_size", impair_batch_size), ("repair_batch_size", repair_batch_size)):
        _check_positive(name, value, integer=True)
    _check_positive("lr", lr)
    _check_positive("noise_lr", noise_lr)
    if isinstance(noise_reg, bool) or not isinstance(noise_reg, (int, float)) or not noise_reg >= 0:
        raise ValueError(f"noise_reg must be a number >= 0 (the official value is 0.1), got {noise_reg!r}")

    set_seed(seed)
    data = task.data
    labels = task.forget_classes if task.kind == "full_class" else [task.params["superclass"]]
    shape = (noise_batch, data.in_channels, data.image_size, data.image_size)
    noises = [unsir_noise(model, c, shape, steps=steps, lr=noise_lr, reg=noise_reg, seed=seed * 1000 + i,
                          device=device) for i, c in enumerate(labels)]
    noise = torch.cat(noises)                                   # one row per distinct noise image
    noise_y = torch.tensor(labels, device=device).repeat_interleave(noise_batch)
    kept = _unsir_retained(task, per_class)

    # impair: positions < len(kept) are retained samples, the others index the noise_batches copies of the noise
    n_real, n_noise = len(kept), noise_batches * len(noise)
    order = torch.randperm(n_real + n_noise, generator=torch.Generator().manual_seed(seed * 1000 + 1))
    kept_t = torch.from_numpy(kept)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for start in range(0, len(order), impair_batch_size):
        pos = order[start:start + impair_batch_size]
        real, fake = kept_t[pos[pos < n_real]], (pos[pos >= n_real] - n_real) % len(noise)
        fake = fake.to(device)
        x = torch.cat([data.normalize(data.x_train[real].to(device)), noise[fake]])
        y = torch.cat([data.y_train[real].to(device), noise_y[fake]])
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    # repair
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for x, y in batches(data, kept, repair_batch_size, shuffle=True, seed=seed * 1000 + 2, device=device):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model


# ---------------------------------------------------------------------------------------------------------------
# Fisher forgetting (Golatkar, Achille and Soatto, "Eternal Sunshine of the Spotless Net", CVPR 2020)

def fisher_chunk(batch_size: int, num_classes: int, num_weights: int, *, itemsize: int = 4,
                 memory_limit: int = 2 ** 30) -> int:
    """How many samples :func:`expected_fisher` differentiates at once: at most ``batch_size``, and few enough that
    their per-class gradients (``samples x classes x weights``, held about three times over: the Jacobian, its
    square and the product with the probabilities) fit in ``memory_limit`` bytes. At least 1. On ResNet-18 (11 M
    weights, 10 classes) one sample needs ~1.3 GB, so on a CPU the chunk is 1; on the small CNN it is the batch."""
    per_sample = 3 * num_classes * num_weights * itemsize
    return int(max(1, min(batch_size, memory_limit // max(per_sample, 1))))


def _memory_limit(device) -> int:
    """Bytes a per-sample computation may use: a quarter of the free memory of a CUDA device, else 1 GiB."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free // 4)
    return 2 ** 30


def expected_fisher(model: nn.Module, data, indices, *, batch_size: int = 32, device="cpu",
                    memory_limit: int | None = None, likelihood: str = "categorical") -> dict[str, torch.Tensor]:
    """The diagonal of the Fisher information of the model's own predictive distribution, averaged over the
    training samples ``indices``: ``F_i = mean_x sum_c p_c(x) (d log p_c(x) / d theta_i)^2``, for every trainable
    parameter (``likelihood="categorical"``: a model trained with cross-entropy). ``likelihood="gaussian"`` is the
    Fisher of a model trained with the squared error ``1/2 ||f(x) - y||^2``, the negative log-likelihood of
    ``N(y; f(x), I)``: ``F_i = mean_x sum_k (d f_k(x) / d theta_i)^2``, the diagonal of the Gauss-Newton matrix
    ``J^T J / n`` (a mixed-linear model's). The model runs in eval mode (BatchNorm uses its running statistics, so
    samples do not interact); the per-sample gradients of all classes come from ``torch.func`` (``vmap`` of
    ``jacrev``), ``batch_size`` samples at a time, in chunks small enough for ``memory_limit`` bytes (:func:`fisher_chunk`; default a quarter
    of a CUDA device's free memory, 1 GiB on a CPU): memory grows as samples x classes x parameters, which on a
    ResNet-18 is ~1.3 GB per sample. The chunking changes only the order of a sum."""
    from torch.func import functional_call, jacrev, vmap

    if likelihood not in ("categorical", "gaussian"):
        raise ValueError(f"likelihood must be 'categorical' (cross-entropy) or 'gaussian' (squared error), "
                         f"not {likelihood!r}")
    idx = np.asarray(indices)
    if idx.size == 0:
        raise ValueError("the Fisher information needs at least one sample; D_r is empty")
    was_training = model.training
    model.eval()
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the model has no trainable parameter to add noise to")

    def log_probs(p: dict, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(functional_call(model, p, (x.unsqueeze(0),)), dim=1)[0]

    def outputs(p: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (x.unsqueeze(0),))[0]

    per_sample = vmap(jacrev(log_probs if likelihood == "categorical" else outputs), in_dims=(None, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    like = next(iter(params.values()))
    chunk = fisher_chunk(batch_size, data.num_classes, sum(p.numel() for p in params.values()),
                         itemsize=like.element_size(),
                         memory_limit=_memory_limit(like.device) if memory_limit is None else memory_limit)
    for x_batch, _ in batches(data, idx, batch_size, device=device):
        for x in x_batch.split(chunk):
            with torch.no_grad():
                prob = F.softmax(model(x), dim=1) if likelihood == "categorical" else None
            jac = per_sample(params, x)  # name -> (chunk, classes, *shape)
            for n, j in jac.items():
                sq = j.detach().pow(2)
                # the categorical Fisher weighs each class by its probability; the Gaussian's weighs outputs alike
                total[n] += sq.sum(dim=(0, 1)) if prob is None else torch.einsum("bc,bc...->...", prob, sq)
            del jac
    model.train(was_training)
    return {n: t / len(idx) for n, t in total.items()}


def _output_layer(model: nn.Module, num_classes: int, trainable_only: bool = True) -> nn.Module | None:
    """The last ``nn.Linear`` with ``num_classes`` outputs: the classifier (by default only a trainable one; a
    mixed-linear model's tail is frozen, its trainable copy being ``w_user``)."""
    found = None
    for m in model.modules():
        if (isinstance(m, nn.Linear) and m.out_features == num_classes
                and (m.weight.requires_grad or not trainable_only)):
            found = m
    return found


def _noise_groups(model: nn.Module, fisher: dict[str, torch.Tensor], num_classes: int):
    """The tensors that Fisher forgetting shapes one by one: ``(name, weights, fisher, on_classifier)``, with
    ``weights`` a view that the noise is written into.

    On an ordinary model they are its trainable parameters. A mixed-linear model has one flat trainable vector,
    ``w_user``, a tangent of its tail's parameters: it is cut into the tail's tensors (``as_tangent``), so that the
    official shaping (per-unit averaging, the factor for the classifier and for one-dimensional tensors) applies
    to each as it would to the tail's own weights, and the classifier is the tail's last linear layer."""
    if hasattr(model, "as_tangent") and hasattr(model, "w_user"):
        tail_head = _output_layer(model.tail, num_classes, trainable_only=False) if hasattr(model, "tail") else None
        head_names = {n for n, p in model.tail.named_parameters()
                      if tail_head is not None and any(p is q for q in tail_head.parameters())}
        weights = model.as_tangent(model.w_user.detach())
        curvature = model.as_tangent(fisher["w_user"])
        for n in weights:
            yield f"w_user[{n}]", weights[n], curvature[n], n in head_names
        return
    head = _output_layer(model, num_classes)
    head_params = {id(p) for p in head.parameters()} if head is not None else set()
    for n, p in model.named_parameters():
        if n in fisher:
            yield n, p.detach(), fisher[n], id(p) in head_params


@register("fisher", paper="Golatkar, Achille and Soatto 2020 (CVPR), Fisher forgetting")
def fisher_forgetting(model: nn.Module, task, *, seed: int = 0, device="cpu", alpha: float = 1e-6,
                      max_variance: float = 1e3, max_variance_output: float = 1e2, retain_samples: int | None = None,
                      batch_size: int = 32, zero_forgotten_rows: bool | None = None, likelihood: str | None = None,
                      noise_seed: int | None = None) -> nn.Module:
    """Fisher forgetting: Gaussian noise on every weight, large where D_r does not need the weight.

    The noise of weight ``i`` has variance ``alpha / (F_i + 1e-8)``, with ``F`` the diagonal Fisher information on
    D_r (:func:`expected_fisher`): what D_r constrains moves little, what only D_f used is scrambled. The shaping
    follows the official code (Golatkar et al., ``get_mean_var``), so that the baseline is the published one:

    - ``1 / (F + 1e-8)`` is capped at ``max_variance`` (1e3), and at ``max_variance_output`` (1e2) on the
      classifier, before the factor ``alpha``;
    - for a tensor of two or more dimensions, the variance is averaged over everything but the first dimension (one
      variance per output unit or filter);
    - the variance is multiplied by 10 on the classifier and on every one-dimensional parameter (meant for BatchNorm,
      the official rule also catches biases);
    - on a class task (``zero_forgotten_rows=None`` or ``True``), the classifier rows of the forgotten classes get
      mean 0 and variance 1e-4, which nearly masks their logits. ``False`` leaves them to the noise alone.

    The official code identifies the classifier as "any tensor with ``num_classes`` rows"; here it is the last
    trainable ``nn.Linear`` with ``num_classes`` outputs (another tensor that happens to have as many rows is left
    alone). The Fisher uses all of D_r unless ``retain_samples`` caps it at a seeded random subset (the official
    code reads all of it, one sample at a time).

    On a mixed-linear model (one with ``user_idx`` and ``w_user``), D_r is its remaining user data (the core data
    are not in ``w_user``); only ``w_user`` gets noise, shaped per tensor of the tail it is a tangent of
    (:func:`_noise_groups`), and the Fisher is the one of the loss it was fitted with, the squared error
    (``likelihood=None`` picks ``"gaussian"`` there, ``"categorical"`` elsewhere; :func:`expected_fisher`). The row
    zeroing does not apply there: zeroing a tangent row does not mask a logit. As for ``ml-forgetting``, the noise's
    generator (torch's Mersenne Twister, not a cryptographic one) is seeded from fresh OS entropy unless
    ``noise_seed`` is given (:func:`~unlearnlib.training.noise_generator`).
    """
    _check_positive("alpha", alpha, hint="the scale of the noise variance; the official code uses 1e-6 to 3e-6")
    _check_positive("batch_size", batch_size, integer=True)
    retain = np.asarray(task.retain_idx)
    user = getattr(model, "user_idx", None)
    mixed_linear = user is not None and hasattr(model, "w_user")
    if user is not None:  # a mixed-linear model: what it may keep are its remaining *user* samples (core is in w_c)
        retain = np.setdiff1d(np.asarray(user), task.forget_idx)
    if likelihood is None:
        likelihood = "gaussian" if mixed_linear else "categorical"
    if retain_samples is not None:
        _check_positive("retain_samples", retain_samples, integer=True)
        if retain_samples < len(retain):
            retain = np.sort(np.random.default_rng(seed).choice(retain, retain_samples, replace=False))
    model = model.to(device)
    if zero_forgotten_rows is None:
        zero_forgotten_rows = task.kind == "full_class" and not mixed_linear
    # a bad request is refused before the curvature pass over D_r, which is most of the method's time
    if zero_forgotten_rows and mixed_linear:
        raise ValueError("zero_forgotten_rows does not apply to a mixed-linear model (zeroing a row of the user "
                         "weights does not mask a logit); pass zero_forgotten_rows=False")
    if zero_forgotten_rows and task.kind != "full_class":
        raise ValueError(f"zero_forgotten_rows applies to a class task, not a {task.kind!r} task")
    if zero_forgotten_rows and _output_layer(model, task.num_classes) is None:
        raise ValueError(f"zero_forgotten_rows needs a trainable nn.Linear classifier with {task.num_classes} "
                         f"outputs; pass zero_forgotten_rows=False")
    fisher = expected_fisher(model, task.data, retain, batch_size=batch_size, device=device, likelihood=likelihood)
    gen, noise_source = noise_generator(noise_seed)
    with torch.no_grad():
        for _, p, f, on_head in _noise_groups(model, fisher, task.num_classes):
            var = (1.0 / (f + 1e-8)).clamp(max=max_variance_output if on_head else max_variance) * alpha
            if p.dim() > 1:
                var = var.mean(dim=tuple(range(1, p.dim())), keepdim=True).expand_as(p).clone()
            if on_head or p.dim() == 1:
                var *= 10
            mean = p.clone()
            if zero_forgotten_rows and on_head:
                rows = torch.as_tensor(list(task.forget_classes), device=p.device)
                mean[rows] = 0.0
                var[rows] = 1e-4
            p.copy_(mean + var.sqrt() * torch.randn(p.shape, generator=gen).to(p.device, p.dtype))
    model.unlearn_info = {"retain_samples": int(len(retain)), "zero_forgotten_rows": bool(zero_forgotten_rows),
                          "likelihood": likelihood, "noise": noise_source}
    return model
