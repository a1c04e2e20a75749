"""VQ-VAE codes as a dataset: encoding real digits with a real tiny diffusers VQModel, the file, its metadata."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from diffusers import VQModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from pixelprior.cli import main
from pixelprior.data import (
    GridDataset,
    codes_metadata,
    encode_dataset,
    encode_to_file,
    load_code_splits,
    load_codes,
    load_dataset,
)
from pixelprior.distributions import bins_to_input
from pixelprior.vqmodel import encode_images, vqvae_identity, vqvae_latent_size
from tests.conftest import tiny_vqmodel

K = 8


@pytest.fixture(scope="module")
def vqvae_dir(tmp_path_factory):
    vqvae = tiny_vqmodel(28, K)
    folder = tmp_path_factory.mktemp("vqvae")
    vqvae.save_pretrained(folder)
    return folder


def test_encode_dataset_gives_the_quantizer_codes_independently_of_batching(vqvae_dir):
    vqvae = VQModel.from_pretrained(vqvae_dir)
    test = load_dataset("mnist5k", "test")
    subset = GridDataset(test.x[:40], 256, labels=test.labels[:40], num_classes=10)
    codes, labels = encode_dataset(vqvae, subset, batch_size=7, device="cpu", progress=False)
    assert codes.shape == (40, 1, 14, 14) and codes.dtype == torch.long
    assert (14, 14) == vqvae_latent_size(vqvae.config)
    assert torch.equal(labels, test.labels[:40])
    assert codes.unique().numel() > 1
    whole, _ = encode_dataset(vqvae, subset, batch_size=40, device="cpu", progress=False)
    assert torch.equal(codes, whole)
    # The codes are the VQModel's own choice: its forward pass decodes exactly these codebook vectors.
    with torch.no_grad():
        latents = vqvae.encode(bins_to_input(subset.x[:3], 256)).latents
        _, _, (_, _, indices) = vqvae.quantize(latents)
    assert torch.equal(codes[:3].flatten(), indices)
    assert torch.equal(encode_images(vqvae, bins_to_input(subset.x[:3], 256)), codes[:3, 0])


def test_encode_dataset_bad_inputs(vqvae_dir):
    vqvae = VQModel.from_pretrained(vqvae_dir)
    with pytest.raises(ValueError, match=r"sample_size \(28, 28\)"):
        encode_dataset(vqvae, GridDataset(torch.zeros(2, 1, 8, 8, dtype=torch.long), 256), progress=False)
    with pytest.raises(ValueError, match="in_channels=1"):
        encode_dataset(vqvae, GridDataset(torch.zeros(2, 3, 28, 28, dtype=torch.long), 256), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        encode_dataset(vqvae, GridDataset(torch.zeros(2, 1, 28, 28, dtype=torch.long), 256), batch_size=0)


def test_encode_to_file_and_load_codes(vqvae_dir, tmp_path, monkeypatch):
    path = str(tmp_path / "codes.safetensors")
    meta = encode_to_file(str(vqvae_dir), "mnist5k", path, splits=("test",), progress=False)
    assert meta["vqvae_path"] == str(vqvae_dir.resolve()) and meta["dataset"] == "mnist5k"
    assert meta["num_values"] == K and meta["latent_size"] == [14, 14] and meta["splits"] == ["test"]
    assert meta["num_classes"] == 10
    config = VQModel.from_pretrained(meta["vqvae_path"]).config
    assert meta["vqvae_config"] == json.loads(vqvae_identity(config)[0])
    assert meta["vqvae_config_sha256"] == vqvae_identity(config)[1]
    with safe_open(path, framework="pt") as f:
        assert sorted(f.keys()) == ["test_codes", "test_labels"]

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load (pickle) was called")

    monkeypatch.setattr(torch, "load", no_pickle)
    test = load_codes(path, "test")
    assert (len(test), test.in_channels, test.num_values, test.sample_size) == (500, 1, K, (14, 14))
    assert torch.equal(test.labels, load_dataset("mnist5k", "test").labels) and test.num_classes == 10
    vqvae = VQModel.from_pretrained(vqvae_dir)
    expected, _ = encode_dataset(vqvae, load_dataset("mnist5k", "test"), progress=False)
    assert torch.equal(test.x, expected)
    with pytest.raises(ValueError, match=r"one of \['test'\]"):
        load_codes(path, "train")
    with pytest.raises(ValueError, match="no such file"):
        codes_metadata(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="ending in .safetensors"):
        encode_to_file(str(vqvae_dir), "mnist5k", str(tmp_path / "codes.pt"))


def test_a_safetensors_file_that_is_not_codes_is_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="pixelprior encode"):
        load_codes(str(tmp_path / "other.safetensors"), "train")


def test_cli_encode(vqvae_dir, tmp_path, capsys):
    output = tmp_path / "codes.safetensors"
    assert main(["encode", "--vqvae", str(vqvae_dir), "--output", str(output), "--device", "cpu"]) == 0
    assert "Wrote" in capsys.readouterr().out
    train, test = load_codes(str(output), "train"), load_codes(str(output), "test")
    assert (len(train), len(test)) == (4500, 500) and train.sample_size == (14, 14)
    with pytest.raises(SystemExit) as error:
        main(["encode", "--vqvae", str(vqvae_dir), "--output", str(tmp_path / "codes.npz")])
    assert error.value.code == 2


# --- bad codes files: every one is a ValueError naming the file -----------------------------------------------------

GRID = 4  # tiny_vqmodel(8, K): 8x8 images, two blocks -> a 4x4 code grid
METADATA_KEYS = ("vqvae_path", "vqvae_config", "vqvae_config_sha256", "num_values", "latent_size", "dataset")


@pytest.fixture(scope="module")
def small_vqvae(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small_vqvae")
    tiny_vqmodel(8, K).save_pretrained(folder)
    return folder


def valid_codes(vqvae_folder) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a valid codes file over ``vqvae_folder``, as save_codes writes them."""
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "train_codes": torch.randint(0, K, (6, 1, GRID, GRID), generator=gen),
        "train_labels": torch.arange(6) % 3,
        "test_codes": torch.randint(0, K, (2, 1, GRID, GRID), generator=gen),
        "test_labels": torch.tensor([0, 2]),
    }
    text, digest = vqvae_identity(VQModel.load_config(vqvae_folder))
    metadata = {
        "format": "pixelprior.codes",
        "vqvae_path": str(vqvae_folder),
        "vqvae_config": text,
        "vqvae_config_sha256": digest,
        "num_values": str(K),
        "latent_size": json.dumps([GRID, GRID]),
        "dataset": "tiny",
        "splits": json.dumps(["train", "test"]),
        "num_classes": "3",
    }
    return tensors, metadata


def _meta(**changes):
    return lambda t, m: (t, {**m, **changes})


def _drop_meta(key):
    return lambda t, m: (t, {k: v for k, v in m.items() if k != key})


def _config(**changes):
    """The VQModel config changed, with its hash recomputed: only the change itself is wrong."""

    def edit(t, m):
        text, digest = vqvae_identity({**json.loads(m["vqvae_config"]), **changes})
        return t, {**m, "vqvae_config": text, "vqvae_config_sha256": digest}

    return edit


def _tensor(key, value=None):
    """Replace the tensor ``key`` by ``value(tensors)``, or drop it."""
    return lambda t, m: ({k: v for k, v in t.items() if k != key} | ({key: value(t)} if value else {}), m)


def _fill_row(key, value):
    return _tensor(key, lambda t: t[key].index_fill(0, torch.tensor([1]), value))


# name -> (an edit of a valid file's (tensors, metadata), what the error says)
BAD_CODES = {
    "wrong format": (_meta(format="other"), "format 'pixelprior.codes'"),
    **{f"no {key}": (_drop_meta(key), rf"keys \['{key}'\]") for key in (*METADATA_KEYS, "splits", "num_classes")},
    "num_values not JSON": (_meta(num_values="eight"), "Expected JSON for 'num_values'"),
    "num_values a float": (_meta(num_values="8.5"), "num_values an int >= 2"),
    "num_values a bool": (_meta(num_values="true"), "num_values an int >= 2"),
    "num_values not the codebook size": (_meta(num_values="16"), "codebook size 8"),
    "latent_size of one side": (_meta(latent_size="[4]"), r"latent_size \[h, w\]"),
    "latent_size of floats": (_meta(latent_size="[4.0, 4.0]"), r"latent_size \[h, w\]"),
    "latent_size not the VQModel's": (_meta(latent_size="[2, 2]"), r"latent grid \[4, 4\]"),
    "splits a string": (_meta(splits='"train"'), "splits a non-empty list"),
    "splits empty": (_meta(splits="[]"), "splits a non-empty list"),
    "splits unknown": (_meta(splits='["train", "validation"]'), "splits a non-empty list"),
    "splits repeated": (_meta(splits='["train", "train"]'), "splits a non-empty list"),
    "num_classes zero": (_meta(num_classes="0"), "num_classes null or a positive int"),
    "vqvae_config a list": (_meta(vqvae_config="[]"), "vqvae_config a JSON object"),
    "vqvae_path empty": (_meta(vqvae_path=""), "a vqvae_path"),
    "config hash edited": (_meta(vqvae_config_sha256="0" * 64), "hash of vqvae_config"),
    "config without a codebook": (_config(num_vq_embeddings=None), "Expected a VQModel's config"),
    "codes of two channels": (_tensor("train_codes", lambda t: t["train_codes"].repeat(1, 2, 1, 1)), "1, 4, 4"),
    "codes of floats": (_tensor("train_codes", lambda t: t["train_codes"].float()), "integer codes"),
    "codes of bools": (_tensor("train_codes", lambda t: t["train_codes"] > 3), "integer codes"),
    "codes of rank 3": (_tensor("train_codes", lambda t: t["train_codes"][:, 0]), "integer codes of shape"),
    "test grid unlike train": (
        _tensor("test_codes", lambda t: t["test_codes"][:, :, :2, :2].contiguous()),
        r"test_codes .* shape \(N, 1, 4, 4\)",
    ),
    "codes >= the codebook size": (_fill_row("train_codes", K), r"train_codes in \[0, 8\)"),
    "negative codes": (_fill_row("train_codes", -1), r"train_codes in \[0, 8\)"),
    "float labels": (_tensor("train_labels", lambda t: t["train_labels"].float() + 0.5), "integer labels"),
    "labels of another length": (_tensor("train_labels", lambda t: t["train_labels"][:4]), r"shape \(6,\)"),
    "labels >= num_classes": (_fill_row("train_labels", 3), r"train_labels in \[0, 3\)"),
    "negative labels": (_fill_row("train_labels", -1), r"train_labels in \[0, 3\)"),
    "labels but num_classes null": (_meta(num_classes="null"), "unexpected"),
    "test labels missing": (_tensor("test_labels"), r"missing \['test_labels'\]"),
    "train codes missing": (_tensor("train_codes"), r"missing \['train_codes'\]"),
    "an extra tensor": (
        _tensor("validation_codes", lambda t: t["test_codes"].clone()),
        r"unexpected \['validation_codes'\]",
    ),
}


def _write(path, edit, vqvae_folder) -> str:
    tensors, metadata = edit(*valid_codes(vqvae_folder))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return str(path)


@pytest.mark.parametrize("case", list(BAD_CODES))
def test_bad_codes_files_are_named_value_errors(case, small_vqvae, tmp_path):
    edit, message = BAD_CODES[case]
    path = _write(tmp_path / "codes.safetensors", edit, small_vqvae)
    with pytest.raises(ValueError, match=message) as error:
        load_dataset(f"codes:{path}", "train")
    assert path in str(error.value)


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _lying_header(data: bytes) -> bytes:
    return (10**12).to_bytes(8, "little") + data[8:]  # a header length beyond the file


BAD_CODE_BYTES = {
    "empty": (lambda data: b"", "empty"),
    "text": (lambda data: b"codes, honestly\n" * 10, "not one"),
    "truncated": (_truncated, "not one"),
    "header length beyond the file": (_lying_header, "not one"),
    "header not JSON": (lambda data: data[:8] + b"{nope" + data[13:], "not one"),
}


@pytest.mark.parametrize("case", list(BAD_CODE_BYTES))
def test_damaged_codes_files_are_named_value_errors(case, small_vqvae, tmp_path):
    damage, message = BAD_CODE_BYTES[case]
    path = tmp_path / "codes.safetensors"
    path.write_bytes(damage(open(_write(path, lambda t, m: (t, m), small_vqvae), "rb").read()))
    with pytest.raises(ValueError, match=message) as error:
        load_codes(str(path), "train")
    assert str(path) in str(error.value)


def test_a_codes_file_checks_its_vqmodel_when_loaded(small_vqvae, tmp_path):
    folder = tmp_path / "vqvae"
    shutil.copytree(small_vqvae, folder)
    path = _write(tmp_path / "codes.safetensors", lambda t, m: (t, m), folder)
    assert load_codes(path, "test").num_values == K
    splits = load_code_splits(path)
    assert (len(splits.train), len(splits.test), splits.metadata["latent_size"]) == (6, 2, [GRID, GRID])
    assert isinstance(splits.vqvae, VQModel) and not splits.vqvae.training

    with pytest.raises(ValueError, match=r"one of \['train', 'test'\]"):
        load_codes(path, "validation")
    only_train = _write(tmp_path / "train.safetensors", _meta(splits='["train"]'), folder)
    os.remove(only_train)
    from safetensors.torch import save_file

    tensors, metadata = valid_codes(folder)
    save_file(
        {k: v for k, v in tensors.items() if k.startswith("train")}, only_train, {**metadata, "splits": '["train"]'}
    )
    assert len(load_codes(only_train, "train")) == 6
    with pytest.raises(ValueError, match=r"splits \['train', 'test'\]"):
        load_code_splits(only_train)

    weights = next(folder.glob("*.safetensors"))
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if not k.startswith("decoder.conv_out")}, str(weights))
    with pytest.raises(ValueError, match="missing keys"):  # diffusers would only warn and initialize them at random
        load_code_splits(path)

    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_vq_embeddings": 2 * K}))
    with pytest.raises(ValueError, match="another config: re-encode"):
        load_codes(path, "train")
    (folder / "config.json").write_text(json.dumps({**config, "_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="_class_name='UNet2DModel'"):
        load_codes(path, "train")
    shutil.rmtree(folder)  # the VQModel moved away: training would fail only at its final save
    with pytest.raises(ValueError, match=r"VQModel recorded in the codes file .* no such folder") as error:
        load_dataset(f"codes:{path}", "test")
    assert path in str(error.value) and str(folder) in str(error.value)


def test_cli_bad_codes_and_missing_vqvae_exit_2(small_vqvae, tmp_path, capsys):
    path = _write(tmp_path / "codes.safetensors", _meta(num_values="16"), small_vqvae)
    argv = ["train", "--model", "pixelcnn_mnist", "--dataset", f"codes:{path}", "--output_dir", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pixelprior train: error: Expected num_values") and path in err and "\n" not in err
    moved = tmp_path / "moved"
    shutil.copytree(small_vqvae, moved)
    path = _write(tmp_path / "moved.safetensors", lambda t, m: (t, m), moved)
    shutil.rmtree(moved)  # before this check, training ran every step and failed at its final save
    assert main([*argv[:4], f"codes:{path}", *argv[5:]]) == 2
    err = capsys.readouterr().err.strip()
    assert "Expected the VQModel recorded in the codes file" in err and "no such folder" in err and "\n" not in err
    missing = str(tmp_path / "nonexistent")
    assert main(["encode", "--vqvae", missing, "--output", str(tmp_path / "c.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    expected = f"Expected a VQModel folder (VQModel.save_pretrained), got {missing!r}: no such folder."
    assert err == f"pixelprior encode: error: {expected}"
    (tmp_path / "file").write_text("")
    assert main(["encode", "--vqvae", str(small_vqvae), "--output", str(tmp_path / "file" / "c.safetensors")]) == 2
    assert "to be a writable path" in capsys.readouterr().err
