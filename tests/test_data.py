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
