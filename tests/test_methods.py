"""Each baseline on real data: forgetting happens where it should and the rest survives."""
import pytest
import torch

from unlearnlib.methods import REGISTRY, available_methods, get_method, unlearn
from unlearnlib.metrics import evaluate
from unlearnlib.models import build_model
from unlearnlib.training import accuracy

from conftest import TINY_RECIPE

BASELINES = {"original", "retrain", "finetune", "gradient_ascent", "neggrad_plus", "random_labels"}


def _acc(model, task):
    rec = evaluate(model, task, device="cpu", svc_max_samples=200)
    return rec["forget_acc"], rec["retain_acc"], rec["test_acc"]


def test_registry_holds_the_baselines_with_one_signature():
    assert BASELINES <= set(available_methods())
    for name in BASELINES:
        info = REGISTRY[name]
        assert info.summary, f"{name} needs a docstring"
        assert all(v is not None or k == "recipe" for k, v in info.hyperparameters.items())


def test_unknown_method_and_unknown_hyperparameter_are_clear_errors(trained, class_task):
    with pytest.raises(ValueError, match="available"):
        get_method("scrub-v9")
    with pytest.raises(TypeError, match="accepted: epochs"):
        unlearn("finetune", trained[0], class_task, epochs=1, learning_rate=0.1)


def test_methods_never_modify_their_input(trained, class_task):
    original = trained[0]
    before = {k: v.clone() for k, v in original.state_dict().items()}
    result = unlearn("gradient_ascent", original, class_task, device="cpu", lr=0.05)
    assert result.model is not original and result.seconds > 0
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())


def test_a_model_for_another_dataset_is_refused(class_task):
    with pytest.raises(ValueError, match="does not match"):
        unlearn("finetune", build_model("small-cnn", 100, 3, 32), class_task)


def test_retrain_from_scratch_knows_nothing_of_the_forgotten_class(trained, class_task):
    model = unlearn("retrain", trained[0], class_task, device="cpu", recipe=TINY_RECIPE, progress=False).model
    forget, retain, test = _acc(model, class_task)
    assert forget < 0.05 and retain > 0.75 and test > 0.7
    with pytest.raises(ValueError, match="needs recipe"):
        unlearn("retrain", trained[0], class_task)


def test_finetune_keeps_retain_accuracy(trained, class_task):
    _, retain0, _ = _acc(trained[0], class_task)
    _, retain, test = _acc(unlearn("finetune", trained[0], class_task, device="cpu", epochs=1).model, class_task)
    assert retain > retain0 - 0.03 and test > 0.7


@pytest.mark.parametrize("name, hp", [("gradient_ascent", {"lr": 0.02, "epochs": 3}),
                                      ("neggrad_plus", {"epochs": 2, "alpha": 0.9}),
                                      ("random_labels", {"epochs": 2})])
def test_forgetting_baselines_lower_forget_accuracy_and_keep_the_rest(trained, class_task, name, hp):
    forget0, _, test0 = _acc(trained[0], class_task)
    forget, _, test = _acc(unlearn(name, trained[0], class_task, device="cpu", **hp).model, class_task)
    assert forget < forget0 - 0.3, f"{name} did not forget: {forget0:.2f} -> {forget:.2f}"
    if name != "gradient_ascent":  # plain ascent is known to damage the rest; the others must not
        # observed test-accuracy drops: neggrad_plus 0.04..0.13 over training seeds 0-2 (0.04..0.06 with initial
        # weights perturbed by 1e-6, as another CPU's kernels would), random_labels <= 0.01. 0.15 was within 0.025 of
        # seed 2; 0.25 leaves room and still fails a collapsed model (plain ascent here drops 0.71..0.73 to chance).
        assert test > test0 - 0.25, f"{name} damaged the other classes: {test0:.2f} -> {test:.2f}"


def test_same_seed_same_unlearning(trained, class_task):
    a = unlearn("neggrad_plus", trained[0], class_task, device="cpu", seed=3).model
    b = unlearn("neggrad_plus", trained[0], class_task, device="cpu", seed=3).model
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert accuracy(a, class_task.data, device="cpu") == accuracy(b, class_task.data, device="cpu")
