"""hf: datasets: Hugging Face datasets built by the test and saved to disk, read back exactly (no network)."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pixelprior.cli import main
from pixelprior.data import load_dataset
from tests.data.test_folder import BAD_IMAGE_BYTES

try:
    import datasets
except ImportError:  # an optional dependency: the tests that need it are skipped, the one without it still runs
    datasets = None
needs_datasets = pytest.mark.skipif(datasets is None, reason="needs the datasets package")


def rgb_images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(n)]


def make(images: list[np.ndarray], labels: list[int] | None, image_column="image", label_column="label", names=None):
    columns = {image_column: [Image.fromarray(a) for a in images]}
    if labels is not None:
        columns[label_column] = labels
    data = datasets.Dataset.from_dict(columns).cast_column(image_column, datasets.Image())
    if names is not None:
        data = data.cast_column(label_column, datasets.ClassLabel(names=names))
    return data


@needs_datasets
def test_saved_dataset_dict_with_train_and_test(tmp_path):
    train_images, test_images = rgb_images(6), rgb_images(3, seed=1)
    names = ["airplane", "bird", "cat"]
    datasets.DatasetDict(
        train=make(train_images, [0, 1, 2, 0, 1, 2], names=names), test=make(test_images, [2, 2, 1], names=names)
    ).save_to_disk(str(tmp_path / "saved"))
    train, test = load_dataset(f"hf:{tmp_path}/saved", "train"), load_dataset(f"hf:{tmp_path}/saved", "test")
    assert (len(train), len(test)) == (6, 3)
    assert (train.num_values, train.in_channels, train.sample_size, train.num_classes) == (256, 3, (5, 7), 3)
    assert train.class_names == names and test.labels.tolist() == [2, 2, 1]
    assert torch.equal(train.x.long(), torch.from_numpy(np.stack(train_images)).permute(0, 3, 1, 2).long())
    assert torch.equal(test.x.long(), torch.from_numpy(np.stack(test_images)).permute(0, 3, 1, 2).long())
    four = load_dataset(f"hf:{tmp_path}/saved", "test", num_bits=4, resolution=(4, 4))
    assert (four.num_values, four.sample_size) == (16, (4, 4)) and int(four.x.max()) <= 15


@needs_datasets
def test_single_split_columns_and_validation(tmp_path):
    # One saved Dataset, columns named img / labels, plain int labels: split 10 % per class, classes = max + 1.
    gray = [np.full((3, 3), 10 * k, np.uint8) for k in range(20)]
    data = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(a) for a in gray], "labels": [k % 2 for k in range(20)]}
    )
    data.cast_column("img", datasets.Image()).save_to_disk(str(tmp_path / "one"))
    train, test = load_dataset(f"hf:{tmp_path}/one", "train"), load_dataset(f"hf:{tmp_path}/one", "test")
    assert (len(train), len(test), train.num_classes, train.in_channels) == (18, 2, 2, 1)
    assert sorted(test.labels.tolist()) == [0, 1] and train.class_names is None
    values = sorted(int(v) for v in torch.cat([train.x, test.x])[:, 0, 0, 0])
    assert values == [10 * k for k in range(20)]
    for image, label in zip(test.x, test.labels, strict=True):  # each image keeps its own label
        assert int(image[0, 0, 0]) // 10 % 2 == int(label)

    # Columns given in the spec, and a 'validation' split as the test part.
    images = rgb_images(4)
    datasets.DatasetDict(
        train=make(images[:3], [1, 0, 1], image_column="pic", label_column="target"),
        validation=make(images[3:], [0], image_column="pic", label_column="target"),
    ).save_to_disk(str(tmp_path / "cols"))
    test = load_dataset(f"hf:{tmp_path}/cols:pic:target", "test")
    assert test.labels.tolist() == [0] and torch.equal(test.x[0], torch.from_numpy(images[3]).permute(2, 0, 1))
    unlabelled = load_dataset(f"hf:{tmp_path}/cols:pic", "train")  # 'target' is not a default label name
    assert unlabelled.labels is None and len(unlabelled) == 3


@needs_datasets
def test_bad_hf_datasets(tmp_path):
    datasets.Dataset.from_dict({"pixels": [[0, 1], [2, 3]], "label": [0, 1]}).save_to_disk(str(tmp_path / "noimg"))
    with pytest.raises(ValueError, match="Expected an image column"):
        load_dataset(f"hf:{tmp_path}/noimg")
    with pytest.raises(ValueError, match="Expected an image column"):  # a column that is not an Image feature
        load_dataset(f"hf:{tmp_path}/noimg:pixels")
    make(rgb_images(2), [0, 1]).save_to_disk(str(tmp_path / "ok"))
    with pytest.raises(ValueError, match="the label column 'target'"):
        load_dataset(f"hf:{tmp_path}/ok:image:target")
    mixed = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(np.zeros((4, 4), np.uint8)), Image.fromarray(np.zeros((2, 3), np.uint8))]}
    )
    mixed.cast_column("image", datasets.Image()).save_to_disk(str(tmp_path / "mixed"))
    with pytest.raises(ValueError, match=r"got sizes 2x3 \(1 images\), 4x4 \(1 images\)"):
        load_dataset(f"hf:{tmp_path}/mixed")
    assert load_dataset(f"hf:{tmp_path}/mixed", "test", resolution=2).sample_size == (2, 2)


# --- bad inputs: every one a ValueError naming the dataset (and the row), one line and exit status 2 in the CLI ----

TRAIN = ["train", "--model", "pixelcnn_mnist", "--output_dir", "unused", "--dataset"]


def saved(tmp_path, images: list[bytes], labels=None, label_feature=None) -> str:
    features = {"image": datasets.Image()} | ({"label": label_feature} if label_feature is not None else {})
    columns = {"image": [{"bytes": b, "path": None} for b in images]} | ({"label": labels} if labels else {})
    data = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    data.save_to_disk(str(tmp_path / "saved"))
    return f"hf:{tmp_path}/saved"


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@needs_datasets
@pytest.mark.parametrize("name", ["empty.png", "text.png", "truncated.png", "bomb.png"])
def test_a_bad_image_in_a_dataset_names_its_row(name, tmp_path):
    data, message = BAD_IMAGE_BYTES[name]
    spec = saved(tmp_path, [png(0), data(), png(2), png(3)])
    with pytest.raises(ValueError, match=message) as error:
        for split in ("train", "test"):
            load_dataset(spec, split)
    assert f"row 1 of the 'train' split of {spec}" in str(error.value)


@needs_datasets
@pytest.mark.parametrize(
    ("labels", "feature", "message"),
    [
        ([0.5, 1.0, 0.0, 1.0], datasets and datasets.Value("float32"), "ClassLabel or integers"),
        (["a", "b", "a", "b"], datasets and datasets.Value("string"), "ClassLabel or integers"),
        ([0, -1, 1, 0], datasets and datasets.ClassLabel(names=["x", "y"]), "labels >= 0"),
        ([0, None, 1, 0], datasets and datasets.Value("int64"), "a label in every row"),
    ],
    ids=["float", "string", "minus-one", "missing"],
)
def test_labels_that_are_not_classes(labels, feature, message, tmp_path):
    spec = saved(tmp_path, [png(k) for k in range(4)], labels, feature)
    with pytest.raises(ValueError, match=message) as error:
        load_dataset(spec)
    assert f"hf:{tmp_path}/saved" in str(error.value)


@needs_datasets
def test_missing_images_and_damaged_folders(tmp_path):
    data = datasets.Dataset.from_dict(
        {"image": [{"bytes": png(0), "path": None}, None]}, features=datasets.Features({"image": datasets.Image()})
    )
    data.save_to_disk(str(tmp_path / "holes"))
    with pytest.raises(ValueError, match=r"got none in row 1 of the 'train' split"):
        load_dataset(f"hf:{tmp_path}/holes")
    spec = saved(tmp_path, [png(k) for k in range(4)])
    for arrow in (tmp_path / "saved").glob("*.arrow"):
        arrow.write_bytes(b"not arrow")
    with pytest.raises(ValueError, match="Expected hf:.*saved to open as the folder saved with save_to_disk") as error:
        load_dataset(spec)
    assert "\n" not in str(error.value)


@needs_datasets
def test_an_unreachable_hub_dataset_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # as offline as this machine, without the retries
    with pytest.raises(ValueError, match=r"Expected hf:someone/digits to open as a Hub id .*ConnectionError"):
        load_dataset("hf:someone/digits")
    assert main([*TRAIN, "hf:someone/digits"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixelprior train: error: Expected hf:someone/digits") and err.count("\n") == 1


def test_without_the_datasets_package_hf_is_a_value_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails as if it were not installed
    with pytest.raises(ValueError, match="Expected the Hugging Face `datasets` package .* pip install datasets"):
        load_dataset("hf:someone/digits")
    assert main([*TRAIN, "hf:someone/digits"]) == 2
    assert capsys.readouterr().err.startswith("pixelprior train: error: Expected the Hugging Face `datasets`")


def test_a_path_under_a_local_folder_is_not_asked_of_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(ValueError, match="got 'data/nope': no such folder"):  # not the Hub id data/nope
        load_dataset("hf:data/nope")
