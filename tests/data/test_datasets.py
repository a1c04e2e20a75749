"""load_dataset: digits, the fixed split, resolution / binarize / num_bits, specs and GridDataset storage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelprior.data import DatasetSpec, list_datasets, load_dataset, parse_dataset
from pixelprior.data.digits import load_digits8
from pixelprior.data.split import fixed_split
from pixelprior.distributions import binarize, bins_to_images, reduce_bit_depth


@pytest.fixture(scope="module")
def sk_digits():
    from sklearn.datasets import load_digits

    return load_digits()


# --- digits -------------------------------------------------------------------------------------------------------


def test_digits_are_sklearns_digits_as_8bit_bins(sk_digits):
    for split in ("train", "test"):
        data = load_dataset("digits", split)
        index = fixed_split(1797, split, sk_digits.target)
        assert (data.num_values, data.in_channels, data.sample_size, data.num_classes) == (256, 1, (8, 8), 10)
        # round(255 v / 16), computed independently of the library
        expected = np.floor(sk_digits.images[index] * 255 / 16 + 0.5).astype(np.int64)
        assert torch.equal(data.x.long()[:, 0], torch.from_numpy(expected))
        assert torch.equal(data.labels, torch.from_numpy(sk_digits.target[index]).long())
    assert len(load_dataset("digits", "train")) + len(load_dataset("digits", "test")) == 1797
    levels = set(load_dataset("digits").x.unique().tolist())
    assert levels == {round(255 * v / 16) for v in range(17)} and {0, 255} <= levels


def test_digits_split_holds_every_digit_in_both_parts():
    for split in ("train", "test"):
        _, labels = load_digits8(split)
        counts = np.bincount(labels, minlength=10)
        assert len(counts) == 10 and (counts > 0).all(), (split, counts)
    assert (len(load_digits8("train")[0]), len(load_digits8("test")[0])) == (1618, 179)


def test_fixed_split_is_a_stratified_partition():
    labels = np.array([0] * 30 + [1] * 9 + [2] * 1 + [3] * 2)
    train, test = fixed_split(len(labels), "train", labels), fixed_split(len(labels), "test", labels)
    assert sorted(train.tolist() + test.tolist()) == list(range(len(labels)))  # disjoint and complete
    assert np.bincount(labels[test], minlength=4).tolist() == [3, 1, 0, 1]  # round(10 %), >= 1 from two items on
    assert np.array_equal(test, fixed_split(len(labels), "test", labels))  # fixed
    assert not np.array_equal(test, fixed_split(len(labels), "test", labels, seed=1))  # the seed matters
    assert len(fixed_split(50, "test")) == 5  # unlabelled: one group
    with pytest.raises(ValueError, match="at least 2"):
        fixed_split(1, "test")
    with pytest.raises(ValueError, match="split"):
        fixed_split(10, "validation")


# --- num_bits / binarize / resolution -----------------------------------------------------------------------------


def test_reduce_bit_depth_gives_each_bin_an_equal_share():
    levels = torch.arange(256, dtype=torch.uint8)
    for n in range(1, 9):
        out = reduce_bit_depth(levels, n)
        assert out.dtype == torch.uint8
        assert out.tolist() == [v // 2 ** (8 - n) for v in range(256)]  # floor
        assert torch.bincount(out.long()).tolist() == [2 ** (8 - n)] * 2**n
    assert torch.equal(reduce_bit_depth(levels, 8), levels)
    assert torch.equal(reduce_bit_depth(levels, 1), binarize(bins_to_images(levels, 256)))  # 1 bit == threshold 0.5
    assert reduce_bit_depth(torch.tensor([0, 7, 8, 255]), 5).tolist() == [0, 0, 1, 31]


@pytest.mark.parametrize(
    ("x", "num_bits", "match"),
    [
        (torch.tensor([0.5]), 4, "integer"),
        (torch.tensor([256]), 4, r"\[0, 256\)"),
        (torch.tensor([-1]), 4, r"\[0, 256\)"),
        (torch.tensor([3]), 0, "num_bits"),
        (torch.tensor([3]), 9, "num_bits"),
        (torch.tensor([3]), True, "num_bits"),
    ],
)
def test_reduce_bit_depth_rejects(x, num_bits, match):
    with pytest.raises(ValueError, match=match):
        reduce_bit_depth(x, num_bits)


def test_num_bits_and_binarize_on_a_source():
    full = load_dataset("digits", "test")
    five = load_dataset("digits", "test", num_bits=5)
    assert five.num_values == 32 and torch.equal(five.x.long(), full.x.long() // 8)
    one, binary = load_dataset("digits", "test", num_bits=1), load_dataset("digits", "test", True)  # positional
    assert one.num_values == binary.num_values == 2
    assert torch.equal(binary.x.long(), (full.x.long() >= 128).long()) and torch.equal(one.x, binary.x)
    assert set(binary.x.unique().tolist()) == {0, 1}
    assert torch.equal(load_dataset("digits", "test", num_bits=8).x, full.x)


def test_resolution_center_crops_then_resizes():
    full = load_dataset("digits", "test")
    # (4, 8) from 8x8: the centred 4x8 box, rows 2..5, already at the target size: no resampling at all.
    crop = load_dataset("digits", "test", resolution=(4, 8))
    assert crop.sample_size == (4, 8) and torch.equal(crop.x, full.x[:, :, 2:6, :])
    assert torch.equal(load_dataset("digits", "test", resolution=8).x, full.x)  # same size: untouched
    up = load_dataset("digits", "test", resolution=16, num_bits=4)
    assert up.sample_size == (16, 16) and up.num_values == 16 and int(up.x.max()) <= 15
    assert torch.equal(up.labels, full.labels)


def test_mnist5k_binarized_is_unchanged_by_the_common_path():
    from pixelprior.data import load_mnist5k

    x, labels = load_mnist5k("test", binarize=True)
    data = load_dataset("mnist5k", "test", binarize=True)
    assert torch.equal(data.x.long(), x) and torch.equal(data.labels, labels)


# --- specs and options --------------------------------------------------------------------------------------------


def test_list_datasets_are_the_builtins():
    assert list_datasets() == ["digits", "mnist5k"]


def test_parse_dataset(tmp_path):
    codes = tmp_path / "codes.safetensors"
    codes.write_bytes(b"")
    assert parse_dataset("digits") == DatasetSpec("builtin", "digits")
    assert parse_dataset("torchvision:CIFAR-10") == ("torchvision", "cifar10")
    assert parse_dataset("torchvision:Fashion_MNIST").arg == "fashionmnist"
    assert parse_dataset("hf:uoft-cs/cifar10") == ("hf", "uoft-cs/cifar10")
    assert parse_dataset("hf:user/set:pic:target") == ("hf", "user/set:pic:target")
    assert parse_dataset(f"hf:{tmp_path}") == ("hf", str(tmp_path))
    assert parse_dataset(f"codes:{codes}") == ("codes", str(codes))
    assert parse_dataset(str(tmp_path)) == ("folder", str(tmp_path))
    assert parse_dataset(f"folder:{tmp_path}") == ("folder", str(tmp_path))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("cifar-nope", "Expected a dataset name: one of mnist5k, digits, an image folder path, hf:NAME, "),
        ("", "Expected a dataset name"),
        ("torchvision:imagenet", r"torchvision:NAME with NAME one of \['cifar10'"),
        ("torchvision:", "torchvision:NAME"),
        ("hf:", r"hf:NAME\[:IMAGE_COLUMN"),
        ("hf:a:b:c:d", r"hf:NAME\[:IMAGE_COLUMN"),
        ("hf:name::label", r"hf:NAME\[:IMAGE_COLUMN"),
        ("hf:./no/such/folder", "no such folder"),
        ("codes:/no/such/file.safetensors", "no such file"),
        ("./no/such/folder", "Expected an image folder"),
        ("folder:nowhere", "Expected an image folder"),
    ],
)
def test_parse_dataset_rejects(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_dataset(spec)
    with pytest.raises(ValueError, match=match):
        load_dataset(spec)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "validation"}, "Expected split"),
        ({"binarize": "yes"}, "binarize"),
        ({"num_bits": 0}, "num_bits"),
        ({"num_bits": 9}, "num_bits"),
        ({"num_bits": 4.0}, "num_bits"),
        ({"binarize": True, "num_bits": 3}, "not both"),
        ({"resolution": 0}, "resolution"),
        ({"resolution": (8, 8, 8)}, "resolution"),
        ({"resolution": "8"}, "resolution"),
        ({"resolution": (8, True)}, "resolution"),
    ],
)
def test_load_dataset_rejects_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("digits", **kwargs)


def test_codes_take_no_pixel_options(tmp_path):
    path = tmp_path / "codes.safetensors"
    path.write_bytes(b"")
    for option in ({"binarize": True}, {"num_bits": 4}, {"resolution": 4}):
        with pytest.raises(ValueError, match="apply to pixels"):
            load_dataset(f"codes:{path}", **option)


# --- GridDataset --------------------------------------------------------------------------------------------------
