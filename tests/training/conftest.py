"""Small real data and configurations shared by the training tests."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from pixelprior.cli import main

# A tiny PixelCNN on scikit-learn's binarized 8x8 digits: a run of a few steps takes well under a second.
DIGITS_RUN = dict(
    model="pixelcnn_mnist",
    model_kwargs={"sample_size": 8, "hidden_channels": 8, "num_layers": 2},
    dataset="digits",
    binarize=True,
    batch_size=8,
    max_eval_samples=64,
    num_sample_images=4,
)


@pytest.fixture(scope="session")
def rgb_folder(tmp_path_factory) -> str:
    """An image folder of 8x8 RGB tiles of scikit-learn's two sample photographs, one class per photograph.

    30 tiles each (54 train / 6 test with the folder's fixed split): real colours for palettes to cluster.
    """
    from sklearn.datasets import load_sample_images

    root = tmp_path_factory.mktemp("rgb")
    for label, photo in enumerate(load_sample_images().images):  # (427, 640, 3) uint8
        os.makedirs(root / f"photo{label}")
        for i in range(30):
            y, x = 100 + 8 * (i // 6), 200 + 8 * (i % 6)
            Image.fromarray(photo[y : y + 8, x : x + 8]).save(root / f"photo{label}" / f"{i:02d}.png")
    return str(root)


def assert_cli_error(argv: list[str], message: str, capsys) -> None:
    """``pixelprior ARGV`` fails with exit status 2 and one line of stderr that contains ``message``."""
    try:
        status = main(argv)
    except SystemExit as exit_info:  # argparse's usage errors, and TrainConfig's checks through parser.error
        status = exit_info.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.splitlines()) == 1, (status, err)
