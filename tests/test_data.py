import numpy as np
import pytest
import torch

from unlearnlib.data import (DATASETS, FASHION_CLASSES, FASHION_SUPERCLASSES, DatasetNotAvailableError,
                             _subset, load_dataset)
from unlearnlib.config import data_root


def test_fashion_mnist_loads_in_memory_with_the_standard_split(fashion):
    assert fashion.x_train.shape == (60000, 1, 28, 28) and fashion.x_train.dtype == torch.uint8
    assert fashion.x_test.shape == (10000, 1, 28, 28)
    assert sorted(fashion.y_train.unique().tolist()) == list(range(10))
    assert torch.bincount(fashion.y_train).tolist() == [6000] * 10
    assert fashion.classes == FASHION_CLASSES and fashion.variant == "torchvision"


def test_normalize_standardises_with_the_dataset_statistics(fashion):
    x = fashion.normalize(fashion.x_train[:5000])
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05


def test_missing_dataset_offline_names_dataset_folder_and_remedy(tmp_path):
    with pytest.raises(DatasetNotAvailableError) as err:
        load_dataset("mnist", root=tmp_path, download=False)
    msg = str(err.value)
    assert "'mnist'" in msg and str(tmp_path) in msg and "UNLEARNLIB_DATA" in msg and ".gz" in msg


def test_cifar100_missing_offline_says_where_to_get_it(tmp_path):
    with pytest.raises(DatasetNotAvailableError, match="cifar-100-python.tar.gz"):
        load_dataset("cifar20", root=tmp_path, download=False)


def test_unknown_dataset_lists_the_available_ones():
    with pytest.raises(ValueError, match="fashion-mnist"):
        load_dataset("imagenet-1k")


def test_fashion_superclasses_cover_every_fine_class_once():
    fines = [f for group in FASHION_SUPERCLASSES.values() for f in group]
    assert sorted(fines) == sorted(FASHION_CLASSES)


def test_fashion_super_trains_on_superclass_and_keeps_fine_labels(fashion):
    sup = load_dataset("fashion-mnist-super")
    assert sup.num_classes == len(FASHION_SUPERCLASSES)
    assert torch.equal(sup.fine_train, fashion.y_train)
    sneaker = FASHION_CLASSES.index("Sneaker")
    footwear = list(FASHION_SUPERCLASSES).index("footwear")
    assert (sup.y_train[sup.fine_train == sneaker] == footwear).all()


def test_subset_is_class_balanced_and_fixed_by_seed():
    a = load_dataset("fashion-mnist", train_size=1000, test_size=200, subset_seed=3)
    b = load_dataset("fashion-mnist", train_size=1000, test_size=200, subset_seed=4)
    assert len(a.y_train) == 1000 and len(a.y_test) == 200
    assert torch.bincount(a.y_train).tolist() == [100] * 10
    assert a.fingerprint() != b.fingerprint()
    again = _subset(load_dataset("fashion-mnist"), 1000, 200, 3)  # rebuilt, not memoised
    assert again is not a and again.fingerprint() == a.fingerprint()


@pytest.mark.skipif(not (data_root() / "cifar10-jpg.zip").exists() and not (data_root() / "cifar10-jpg.npz").exists(),
                    reason="cifar10-jpg.zip is not in the data root")
def test_cifar10_jpeg_fallback_keeps_torchvision_order_and_records_variant():
    import io
    import zipfile

    data = load_dataset("cifar10")
    assert data.variant == "cifar10-jpg-q75"
    assert data.x_train.shape == (50000, 3, 32, 32) and data.x_test.shape == (10000, 3, 32, 32)
    with zipfile.ZipFile(data_root() / "cifar10-jpg.zip") as z:
        labels = np.load(io.BytesIO(z.read("cifar10-jpg/original_order_labels.npz")))
    assert np.array_equal(data.y_train.numpy(), labels["train_labels"])
    # torchvision's first training image is a frog (6); its JPEG must be the first frog file
    assert data.y_train[0] == 6 and data.x_train.float().mean() > 50


def test_every_registered_dataset_is_documented_in_the_data_readme():
    from unlearnlib.config import REPO_ROOT

    readme = (REPO_ROOT / "data" / "README.md").read_text()
    for name in DATASETS:
        assert f"`{name}`" in readme


def test_fine_classes_of_a_superclass_are_the_sub_class_candidates():
    from unlearnlib.data import FASHION_SUPERCLASSES

    data = load_dataset("fashion-mnist-super", train_size=3000, test_size=1000, subset_seed=0)
    assert data.fine_classes_in("tops") == FASHION_SUPERCLASSES["tops"]
    assert data.fine_classes_in("bags") == ["Bag"]
    with pytest.raises(ValueError, match="unknown class"):
        data.fine_classes_in("hats")
    with pytest.raises(ValueError, match="no fine labels"):
        load_dataset("fashion-mnist", train_size=3000, test_size=1000, subset_seed=0).fine_classes_in(0)


def test_a_generated_cifar100_fixture_loads_only_when_marked_and_says_what_it_is(tmp_path):
    """The paper-smoke check reads a generated stand-in in CIFAR-100's on-disk format; the loader accepts it only
    with its marker file, warns, and records a variant that no result can mistake for CIFAR-100."""
    from cifar100_fixture import write_cifar100_fixture

    from unlearnlib.data import LOADER_FIXTURE_MARK, LOADER_FIXTURE_VARIANT

    folder = write_cifar100_fixture(tmp_path, per_class_train=3, per_class_test=1)
    with pytest.warns(UserWarning, match="loader fixture"):
        fine = load_dataset("cifar100", root=tmp_path, download=False)
    with pytest.warns(UserWarning, match="loader fixture"):
        coarse = load_dataset("cifar20", root=tmp_path, download=False)
    assert fine.spec["variant"] == coarse.spec["variant"] == LOADER_FIXTURE_VARIANT
    assert fine.x_train.shape == (300, 3, 32, 32) and fine.num_classes == 100 and coarse.num_classes == 20
    assert torch.equal(coarse.fine_train, fine.y_train)            # one set of images, two label sets
    assert "rocket" in coarse.fine_classes_in("vehicles_2")        # the SSD chapter's paper tasks exist
    assert len(fine.val_idx) == 30                                 # a validation split is carved as for the real one
    unmarked = write_cifar100_fixture(tmp_path / "unmarked", per_class_train=3, per_class_test=1)
    (unmarked / LOADER_FIXTURE_MARK).unlink()
    with pytest.raises(DatasetNotAvailableError, match="cifar-100-python.tar.gz"):  # torchvision's md5 check refuses it
        load_dataset("cifar100", root=unmarked.parent, download=False)
