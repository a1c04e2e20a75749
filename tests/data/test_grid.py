"""GridDataset: the in-memory dataset every source loads into; its storage and the checks of its input."""

from __future__ import annotations

import pytest
import torch

from pixelprior.data import GridDataset


def test_grid_dataset_checks_its_input():
    with pytest.raises(ValueError, match="integer tensor"):
        GridDataset(torch.rand(2, 1, 4, 4), num_values=2)
    with pytest.raises(ValueError, match=r"values in \[0, 2\)"):
        GridDataset(torch.full((2, 1, 4, 4), 2), num_values=2)
    with pytest.raises(ValueError, match="labels of shape"):
        GridDataset(torch.zeros(2, 1, 4, 4, dtype=torch.long), num_values=2, labels=torch.zeros(3, dtype=torch.long))
    data = GridDataset(torch.ones(2, 1, 4, 4, dtype=torch.long), num_values=2)
    assert set(data[0]) == {"x"}


def test_grid_dataset_stores_compactly_and_gives_long_items():
    data = GridDataset(torch.full((3, 2, 4, 4), 255), num_values=256, labels=torch.tensor([0, 1, 2]), num_classes=3)
    assert data.x.dtype == torch.uint8 and data[1]["x"].dtype == torch.long and int(data[1]["x"].max()) == 255
    codes = GridDataset(torch.full((2, 1, 4, 4), 1000), num_values=1024)
    assert codes.x.dtype == torch.int16 and codes[0]["x"].dtype == torch.long and int(codes[0]["x"][0, 0, 0]) == 1000
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        GridDataset(
            torch.zeros(2, 1, 4, 4, dtype=torch.long), num_values=2, labels=torch.tensor([0, 3]), num_classes=3
        )
    with pytest.raises(ValueError, match=r"values in \[0, 256\)"):
        GridDataset(torch.full((1, 1, 2, 2), 256), num_values=256)
    with pytest.raises(ValueError, match="integer tensor"):
        GridDataset(torch.zeros(1, 1, 2, 2, dtype=torch.bool), num_values=2)
    with pytest.raises(ValueError, match="class names"):
        GridDataset(torch.zeros(1, 1, 2, 2, dtype=torch.long), 2, torch.tensor([0]), num_classes=2, class_names=["a"])


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (torch.tensor([0.0, 1.7]), "integer tensor, got torch.float32"),  # 1.7 would have become class 1
        (torch.tensor([True, False]), "integer tensor, got torch.bool"),
        ([0, 1], "integer tensor, got list"),
        (torch.tensor([0, -1]), r"labels >= 0, got labels in \[-1, 0\]"),  # without num_classes too
    ],
)
def test_labels_must_be_integer_classes(labels, match):
    with pytest.raises(ValueError, match=match):
        GridDataset(torch.zeros(2, 1, 2, 2, dtype=torch.long), num_values=2, labels=labels)
