"""``pixelprior compress`` / ``decompress`` / ``score`` end to end on a tiny saved pipeline; their one-line errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from pixelprior import create_prior
from pixelprior.cli import main
from pixelprior.pipelines import PixelPriorPipeline


def save_pipeline(path, seed=0, **kwargs):
    torch.manual_seed(seed)
    config = {"hidden_channels": 8, "num_layers": 1, "sample_size": 8, **kwargs}
    PixelPriorPipeline(create_prior("pixelcnn_mnist", **config)).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    root = tmp_path_factory.mktemp("binary")
    pipeline = save_pipeline(root / "pipe")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(3):
        path = root / "in" / f"digit{index}.{('png', 'bmp', 'tif')[index]}"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray((rng.integers(0, 2, (8, 8)) * 255).astype(np.uint8), "L").save(path)
        paths.append(str(path))
    return root, pipeline, paths


def error_of(argv, capsys) -> str:
    """The one-line message of a command that fails with exit status 2 (a usage error or a ValueError)."""
    try:
        status = main(argv)
    except SystemExit as exit_info:
        status = exit_info.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


def test_compress_then_decompress_round_trips_the_pixels(binary, capsys):
    root, pipeline, paths = binary
    stream = root / "digits.pxpc"
    assert main(["compress", "--pipeline", pipeline, "--output", str(stream), *paths]) == 0
    assert "3 images in" in capsys.readouterr().out
    out = root / "out"
    assert main(["decompress", "--pipeline", pipeline, "--output_dir", str(out), str(stream)]) == 0
    for path in paths:
        name = path.rsplit("/", 1)[1].rsplit(".", 1)[0] + ".png"
        with Image.open(path) as original, Image.open(out / name) as decoded:
            assert np.array_equal(np.asarray(original.convert("L")), np.asarray(decoded.convert("L")))
    # nothing is overwritten without --force
    message = error_of(["decompress", "--pipeline", pipeline, "--output_dir", str(out), str(stream)], capsys)
    assert "digit0.png' exists" in message
    assert "exists" in error_of(["compress", "--pipeline", pipeline, "--output", str(stream), *paths], capsys)


def test_dataset_split_round_trips(tmp_path, capsys):
    pipeline = save_pipeline(tmp_path / "pipe", num_values=256)  # 8x8, 8-bit: scikit-learn's digits
    stream = tmp_path / "digits.pxpc"
    argv = ["compress", "--pipeline", pipeline, "--output", str(stream), "--dataset", "digits", "--split", "test"]
    assert main(argv) == 0
    assert main(["decompress", "--pipeline", pipeline, "--output_dir", str(tmp_path / "out"), str(stream)]) == 0
    from pixelprior.data import load_dataset

    test = load_dataset("digits", "test")
    with Image.open(tmp_path / "out" / "00178.png") as image:
        assert np.array_equal(np.asarray(image), test.x[178, 0].numpy())
    assert len(list((tmp_path / "out").iterdir())) == len(test) == 179


@pytest.mark.parametrize(
    "image,message",
    [
        (Image.new("L", (9, 8)), "8x8 \\(HxW\\) for this model, got 8x9 in .*bad.png"),
        (Image.new("RGB", (8, 8)), "mode 1 or L for this model, got mode RGB in .*bad.png"),
        (Image.new("L", (8, 8), 7), "2 levels of this model .* in .*bad.png"),
    ],
)
def test_bad_images_are_named_in_one_line(binary, tmp_path, capsys, image, message):
    _, pipeline, paths = binary
    image.save(tmp_path / "bad.png")
    argv = ["compress", "--pipeline", pipeline, "--output", str(tmp_path / "s"), paths[0], str(tmp_path / "bad.png")]
    line = error_of(argv, capsys)
    assert line.startswith("pixelprior compress: error: ")
    assert __import__("re").search(message, line), line


def test_other_errors(binary, tmp_path, capsys):
    root, pipeline, paths = binary
    out = str(tmp_path / "s")
    assert "not both and not neither" in error_of(["compress", "--pipeline", pipeline, "--output", out], capsys)
    assert "model_index.json" in error_of(["compress", "--pipeline", str(tmp_path), "--output", out, *paths], capsys)
    conditional = save_pipeline(tmp_path / "cond", num_classes=10)
    assert "--class_labels" in error_of(["compress", "--pipeline", conditional, "--output", out, *paths], capsys)
    assert main(["compress", "--pipeline", conditional, "--output", out, *paths, "--class_labels", "3"]) == 0
    other = save_pipeline(tmp_path / "other", seed=1, num_classes=10)
    message = error_of(["decompress", "--pipeline", other, "--output_dir", str(tmp_path / "o"), out], capsys)
    assert "pixelprior decompress: error: Expected the model the stream was coded with" in message
    (tmp_path / "junk").write_bytes(b"junk")
    message = error_of(
        ["decompress", "--pipeline", pipeline, "--output_dir", str(tmp_path / "o"), str(tmp_path / "junk")], capsys
    )
    assert "Expected a pixelprior stream" in message


def test_score_writes_csv_heatmaps_and_ratios(binary, tmp_path, capsys):
    root, pipeline, paths = binary
    background = save_pipeline(tmp_path / "bg", seed=1)
    csv_path, maps = tmp_path / "scores.csv", tmp_path / "maps"
    argv = ["score", "--pipeline", pipeline, *paths, "--output", str(csv_path), "--heatmaps", str(maps)]
    assert main([*argv, "--background", background]) == 0
    with open(csv_path) as file:
        rows = list(csv.DictReader(file))
    assert [row["name"] for row in rows] == ["digit0.png", "digit1.png", "digit2.png"]
    for row in rows:
        assert float(row["bits_per_dim"]) == pytest.approx(-float(row["nats"]) / (64 * np.log(2)), abs=1e-5)
        ratio = (float(row["background_bits_per_dim"]) - float(row["bits_per_dim"])) * 64 * np.log(2)
        assert float(row["likelihood_ratio"]) == pytest.approx(ratio, abs=1e-3)
        complexity = float(row["bits_per_dim"]) - float(row["png_bits_per_dim"])
        assert float(row["input_complexity"]) == pytest.approx(complexity, abs=1e-5)
    with Image.open(maps / "digit0.png") as image:
        assert image.size == (4 * 17, 4 * 8)
    assert "expected a .csv" in error_of(["score", "--pipeline", pipeline, *paths, "--output", "x.txt"], capsys)
