import numpy as np
import pytest
import torch

from unlearnlib import tasks
from unlearnlib.data import FASHION_CLASSES, load_dataset
from unlearnlib.tasks import ForgetTask


def _partition_ok(task):
    """D_f, D_r and the validation split partition the training split; the test split is split in two."""
    n = len(task.data.y_train)
    assert np.intersect1d(task.forget_idx, task.retain_idx).size == 0
    assert np.intersect1d(task.train_idx, task.val_idx).size == 0
    assert len(task.forget_idx) + len(task.retain_idx) + len(task.val_idx) == n
    assert np.intersect1d(task.test_forget_idx, task.test_retain_idx).size == 0
    assert len(task.test_forget_idx) + len(task.test_retain_idx) == len(task.data.y_test)


def test_full_class_forgets_exactly_the_class_in_train_and_test(fashion):
    task = tasks.full_class(fashion, "Sneaker")
    _partition_ok(task)
    sneaker = FASHION_CLASSES.index("Sneaker")
    assert len(task.forget_idx) == 5500 and len(task.test_forget_idx) == 1000  # 500 sneakers are in validation
    assert len(task.val_forget_idx) == 500 and (fashion.y_train[task.val_forget_idx] == sneaker).all()
    assert not (fashion.y_train[task.val_retain_idx] == sneaker).any()
    assert (fashion.y_train[task.forget_idx] == sneaker).all()
    assert not (fashion.y_train[task.retain_idx] == sneaker).any()
    assert task.forget_classes == [sneaker]


def test_full_class_accepts_several_classes_by_index_or_name(fashion):
    task = tasks.full_class(fashion, [0, "Bag"])
    assert len(task.forget_idx) == 11000 and task.params["classes"] == [0, 8]


@pytest.mark.parametrize("bad", ["sneakers", 10, -1])
def test_unknown_class_is_a_clear_error(fashion, bad):
    with pytest.raises(ValueError, match="unknown class"):
        tasks.full_class(fashion, bad)


def test_forgetting_every_class_is_refused(small_fashion):
    with pytest.raises(ValueError, match="every class"):
        tasks.full_class(small_fashion, list(range(10)))


def test_sub_class_keeps_the_superclass_label():
    sup = load_dataset("fashion-mnist-super")
    task = tasks.sub_class(sup, "Sneaker")
    _partition_ok(task)
    assert len(task.forget_idx) == 5500 and len(task.test_forget_idx) == 1000  # 500 in the validation split
    assert set(sup.y_train[task.forget_idx].tolist()) == {task.params["superclass"]}
    # the superclass still has other members in the retain set
    assert (sup.y_train[task.retain_idx] == task.params["superclass"]).sum() == 11000  # Sandal, Ankle boot


def test_sub_class_needs_a_superclass_dataset(fashion):
    with pytest.raises(ValueError, match="no fine labels"):
        tasks.sub_class(fashion, "Sneaker")


def test_random_samples_by_count_and_fraction_fixed_by_seed(fashion):
    a = tasks.random_samples(fashion, 600, seed=0)
    _partition_ok(a)
    assert len(a.forget_idx) == 600 and len(a.test_forget_idx) == 0 and len(a.test_retain_idx) == 10000
    assert np.array_equal(a.forget_idx, tasks.random_samples(fashion, 600, seed=0).forget_idx)
    assert not np.array_equal(a.forget_idx, tasks.random_samples(fashion, 600, seed=1).forget_idx)
    # a fraction of D, the 55,000 training images outside the validation split
    assert len(tasks.random_samples(fashion, fraction=0.1, seed=0).forget_idx) == 5500


@pytest.mark.parametrize("kwargs, match", [({}, "exactly one"), ({"n": 5, "fraction": 0.1}, "exactly one"),
                                           ({"n": 0}, "between"), ({"fraction": 1.5}, "fraction"),
                                           ({"n": 3000}, "between")])
def test_random_samples_rejects_bad_sizes(small_fashion, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tasks.random_samples(small_fashion, **kwargs)


def test_instances_and_their_errors(small_fashion):
    task = tasks.instances(small_fashion, [5, 1, 99])
    assert task.forget_idx.tolist() == [1, 5, 99]
    with pytest.raises(ValueError, match="at least one"):
        tasks.instances(small_fashion, [])
    with pytest.raises(ValueError, match="must be in"):
        tasks.instances(small_fashion, [3000])
    with pytest.raises(ValueError, match="duplicates"):
        tasks.instances(small_fashion, [1, 1])


def test_empty_forget_set_is_refused_with_advice(small_fashion):
    with pytest.raises(ValueError, match="empty forget set"):
        ForgetTask("instances", small_fashion, [], np.arange(10), [], np.arange(5))


def test_saved_task_reloads_identically(tmp_path, fashion):
    task = tasks.random_samples(fashion, 250, seed=7)
    path = task.save(tmp_path / "random")
    assert path.suffix == ".npz" and not list(tmp_path.glob("*.tmp"))
    again = ForgetTask.load(path)
    assert again.kind == "random" and again.params == task.params
    for name in ("forget_idx", "retain_idx", "test_forget_idx", "test_retain_idx"):
        assert np.array_equal(getattr(again, name), getattr(task, name))


def test_loading_a_task_against_other_data_is_refused(tmp_path, small_fashion):
    path = tasks.full_class(small_fashion, 1).save(tmp_path / "t.npz")
    other = load_dataset("fashion-mnist", train_size=3000, test_size=1000, subset_seed=5)
    with pytest.raises(ValueError, match="differs"):
        ForgetTask.load(path, data=other)
    with pytest.raises(FileNotFoundError, match="no saved forget task"):
        ForgetTask.load(tmp_path / "missing.npz")


def test_trigger_corruption_stamps_patch_relabels_and_splits_known_hidden(tmp_path, small_fashion):
    task = tasks.corrupted(small_fashion, "trigger", n_corrupt=100, discovery_rate=0.3, target_class=0, seed=1)
    c = task.corruption
    assert len(c["corrupt_idx"]) == 100 and len(c["known_idx"]) == 30 and len(c["hidden_idx"]) == 70
    assert np.array_equal(task.forget_idx, c["known_idx"])
    assert np.isin(c["hidden_idx"], task.retain_idx).all()
    assert (task.data.y_train[c["corrupt_idx"]] == 0).all()
    # the pool is every class, the target class included (official code): about a tenth are already class 0
    assert 0 < (small_fashion.y_train[c["corrupt_idx"]] == 0).sum() < 30
    assert (task.data.x_train[c["corrupt_idx"]][..., -3:, -3:] == 255).all()
    clean = np.setdiff1d(np.arange(3000), c["corrupt_idx"])
    assert torch.equal(task.data.x_train[clean], small_fashion.x_train[clean])
    again = ForgetTask.load(task.save(tmp_path / "trig"), data=small_fashion)
    assert again.data.fingerprint() == task.data.fingerprint()
    assert np.array_equal(again.corruption["hidden_idx"], c["hidden_idx"])
    x, _ = tasks.triggered_test(task)
    assert (x[..., -3:, -3:] == 255).all()


def test_augmentation_keeps_the_trigger_in_the_corner(small_fashion):
    from unlearnlib.training import batches

    task = tasks.corrupted(small_fashion, "trigger", n_corrupt=100, target_class=0, seed=1)
    white = task.data.normalize(torch.full((1, 1, 1, 1), 255, dtype=torch.uint8)).item()
    poisoned, clean = task.corruption["corrupt_idx"][:64], np.setdiff1d(task.train_idx, task.corruption["corrupt_idx"])
    for seed in range(5):  # crop offsets and flips differ with the seed; the patch does not move
        x, _ = next(batches(task.data, poisoned, 64, augment=True, seed=seed))
        assert torch.allclose(x[..., -3:, -3:], torch.tensor(white))
    x, _ = next(batches(task.data, clean[:64], 64, augment=True, seed=0))
    assert not torch.allclose(x[..., -3:, -3:], torch.tensor(white))  # clean images get no patch


def test_a_corrupted_task_saved_under_the_old_definition_is_refused(tmp_path, small_fashion):
    task = tasks.corrupted(small_fashion, "trigger", n_corrupt=20, target_class=0, seed=0)
    old = dict(task.corruption)
    old.pop("definition")
    with pytest.raises(ValueError, match="Delete the saved task"):
        tasks._apply_corruption(small_fashion, old)


def test_label_swap_and_random_label_corruptions(small_fashion):
    swap = tasks.corrupted(small_fashion, "label_swap", n_corrupt=40, swap_classes=("Pullover", "Coat"), seed=0)
    c = swap.corruption
    assert set(c["clean_labels"].tolist()) == {2, 4}
    assert np.array_equal(c["corrupt_labels"], np.where(c["clean_labels"] == 2, 4, 2))
    rnd = tasks.corrupted(small_fashion, "random_label", fraction=0.02, discovery_rate=0.5, seed=0)
    c = rnd.corruption
    n_usable = len(small_fashion.train_idx)  # a fraction of D, outside the validation split, which stays clean
    assert len(c["corrupt_idx"]) == round(0.02 * n_usable) and (c["corrupt_labels"] != c["clean_labels"]).all()
    assert np.intersect1d(c["corrupt_idx"], small_fashion.val_idx).size == 0
    with pytest.raises(ValueError, match="discovery_rate"):
        tasks.corrupted(small_fashion, "trigger", n_corrupt=10, discovery_rate=0)
    with pytest.raises(ValueError, match="unknown corruption"):
        tasks.corrupted(small_fashion, "poison", n_corrupt=10)


def test_fixed_saves_once_then_reloads_and_refuses_drift(tmp_path, small_fashion):
    path = tmp_path / "fixed.npz"
    first = tasks.fixed(tasks.random_samples(small_fashion, 50, seed=0), path)
    again = tasks.fixed(tasks.random_samples(small_fashion, 50, seed=0), path)
    assert path.exists() and np.array_equal(first.forget_idx, again.forget_idx)
    with pytest.raises(ValueError, match="differs from the task built now"):
        tasks.fixed(tasks.random_samples(small_fashion, 50, seed=1), path)
