"""Malformed and malicious pipeline folders: each is refused with a ValueError saying what is wrong; none runs code.

Every case starts from a real saved folder (``conftest.saved``), changes one thing, and loads it through
``<Pipeline>.from_pretrained`` and :func:`~pixelprior.pipelines.load_pipeline`; the cases that only change
``model_index.json``'s components also go through ``DiffusionPipeline.from_pretrained``. A payload (a ``.py``
file a loader might import, a pickle a loader might unpickle) would create the file ``MARKER`` in the folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file, save_file

from pixelprior import PixelPriorPipeline, VQPriorPipeline
from pixelprior.pipelines import load_pipeline

from .conftest import latents

CLASSES = {"px": PixelPriorPipeline, "vq": VQPriorPipeline}
WEIGHTS = "diffusion_pytorch_model.safetensors"


class Payload:
    """Unpickling this object would run ``exec``: create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def _code(folder: Path) -> str:
    return f"open({str(folder / 'MARKER')!r}, 'w').close()\n"


def index(**changes) -> Callable[[Path], None]:
    """Set (or, for ``None``, delete) entries of model_index.json."""

    def edit(folder: Path) -> None:
        data = json.loads((folder / "model_index.json").read_text())
        for key, value in changes.items():
            data.pop(key) if value is None else data.__setitem__(key, value)
        (folder / "model_index.json").write_text(json.dumps(data))

    return edit


def config(component: str = "prior", **changes) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / component / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    return edit


def write(relative: str, content: bytes | str | Callable[[Path], bytes | str]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = content(folder) if callable(content) else content
        path = folder / relative
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return edit


def remove(relative: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return edit


def both(*edits: Callable[[Path], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        for e in edits:
            e(folder)

    return edit


def truncate(relative: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = (folder / relative).read_bytes()
        (folder / relative).write_bytes(data[: len(data) // 2])

    return edit


def pickled_payload(relative: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        torch.save({"weight": Payload(folder / "MARKER")}, folder / relative)

    return edit


def renamed_tensor(folder: Path) -> None:
    state = load_file(folder / "prior" / WEIGHTS)
    key = sorted(state)[0]
    state[key + "_renamed"] = state.pop(key)
    save_file(state, folder / "prior" / WEIGHTS)


# (id, saved folder, change, message; diffusers: whether DiffusionPipeline.from_pretrained is checked too)
CASES = [
    ("no model_index.json", "px", remove("model_index.json"), r"model_index.json at .*no such file", False),
    ("index not JSON", "px", write("model_index.json", b"{\x00garbage"), "unreadable JSON", False),
    ("index not UTF-8", "px", write("model_index.json", b"\xff\xfe{}"), "unreadable JSON", False),
    ("index a JSON list", "px", write("model_index.json", "[1, 2]"), "got a JSON list", False),
    ("index a JSON string", "px", write("model_index.json", '"PixelPriorPipeline"'), "got a JSON str", False),
    ("index of 2 MB", "px", write("model_index.json", " " * (2 << 20) + "{}"), "at most 1048576 bytes", False),
    ("index nested 100k deep", "px", write("model_index.json", "[" * 100_000), "unreadable JSON", False),
    ("_class_name missing", "px", index(_class_name=None), "_class_name", False),
    (
        "_class_name a custom pipeline file",
        "px",
        both(index(_class_name=["evil", "PixelPriorPipeline"]), write("evil.py", _code)),
        r"_class_name .*got \['evil', 'PixelPriorPipeline'\]",
        False,
    ),
    ("_class_name a number", "px", index(_class_name=7), "_class_name .*got 7", False),
    ("_class_name a diffusers pipeline", "px", index(_class_name="DDPMPipeline"), "got 'DDPMPipeline'", False),
    ("prior a diffusers UNet", "px", index(prior=["diffusers", "UNet2DModel"]), "component 'prior'", True),
    ("palette a prior class", "px", index(palette=["pixelprior", "PixelCNN"]), "component 'palette'", True),
    ("palette from diffusers", "px", index(palette=["diffusers", "ColorPalette"]), "component 'palette'", True),
    ("prior a transformers model", "px", index(prior=["transformers", "GPT2Model"]), "component 'prior'", True),
    ("prior os.system", "px", index(prior=["os", "system"]), "component 'prior'", True),
    ("prior a pixelprior function", "px", index(prior=["pixelprior", "create_prior"]), "component 'prior'", True),
    ("prior the base class", "px", index(prior=["pixelprior", "AutoregressivePrior"]), "component 'prior'", True),
    ("prior an unknown class", "px", index(prior=["pixelprior", "NotAModel"]), "component 'prior'", True),
    ("prior a class name list", "px", index(prior=["pixelprior", ["PixelCNN"]]), "component 'prior'", True),
    (
        "prior a custom module file",
        "px",
        both(index(prior=["evil_module", "Prior"]), write("prior/evil_module.py", _code)),
        "component 'prior'",
        True,
    ),
    ("prior a string", "px", index(prior="pixelprior"), "component 'prior'", True),
    ("prior one item", "px", index(prior=["pixelprior"]), "component 'prior'", True),
    ("prior three items", "px", index(prior=["pixelprior", "PixelCNN", "x"]), "component 'prior'", True),
    ("prior null", "px", index(prior=[None, None]), "component 'prior'", True),
    ("prior missing", "px", index(prior=None), "component 'prior'", True),
    ("extra scheduler", "px", index(scheduler=["diffusers", "DDPMScheduler"]), r"got also \['scheduler'\]", True),
    ("extra os.system", "px", index(evil=["os", "system"]), r"got also \['evil'\]", True),
    ("vqvae a diffusers UNet", "vq", index(vqvae=["diffusers", "UNet2DModel"]), "component 'vqvae'", True),
    ("vqvae an AutoencoderKL", "vq", index(vqvae=["diffusers", "AutoencoderKL"]), "component 'vqvae'", True),
    ("vqvae a pixelprior prior", "vq", index(vqvae=["pixelprior", "PixelCNN"]), "component 'vqvae'", True),
    ("vqvae missing", "vq", index(vqvae=None), "component 'vqvae'", True),
    ("prior folder missing", "px", remove("prior"), "folder for component 'prior'", False),
    ("prior a file", "px", both(remove("prior"), write("prior", "x")), "folder for component 'prior'", False),
    ("prior config missing", "px", remove("prior/config.json"), "config.json of component 'prior'", False),
    ("prior config not JSON", "px", write("prior/config.json", "{"), "unreadable JSON", False),
    ("prior config another class", "px", config(_class_name="UNet2DModel"), "got 'UNet2DModel'", False),
    ("prior config unknown key", "px", config(evil_key=1), r"got unknown \['evil_key'\]", False),
    ("prior config a string size", "px", config(hidden_channels="8"), "valid config for component 'prior'", False),
    ("prior config negative size", "px", config(num_layers=-1), "component 'prior'", False),
    ("prior config 200k channels", "px", config(hidden_channels=200_000), "builds more than", False),
    ("prior config 10M layers", "px", config(num_layers=10_000_000), "builds more than", False),
    ("prior config wider than weights", "px", config(hidden_channels=16), "match the config of component", False),
    ("prior weights missing", "px", remove(f"prior/{WEIGHTS}"), "weights of component 'prior'", False),
    ("prior weights truncated", "px", truncate(f"prior/{WEIGHTS}"), "unreadable .*prior", False),
    ("prior weights garbage", "px", write(f"prior/{WEIGHTS}", b"\x07" * 999), "unreadable .*prior", False),
    ("prior weights empty", "px", write(f"prior/{WEIGHTS}", b""), "unreadable .*prior", False),
    ("prior weights renamed tensor", "px", renamed_tensor, "match the config of component 'prior'", False),
    (
        "prior weights a pickle payload",
        "px",
        both(remove(f"prior/{WEIGHTS}"), pickled_payload("prior/diffusion_pytorch_model.bin")),
        "unreadable .*diffusion_pytorch_model.bin",
        False,
    ),
    ("vqvae config not JSON", "vq", write("vqvae/config.json", "nope"), "unreadable JSON", False),
    ("vqvae config another class", "vq", config("vqvae", _class_name="AutoencoderKL"), "got 'AutoencoderKL'", False),
    ("vqvae weights truncated", "vq", truncate(f"vqvae/{WEIGHTS}"), "unreadable .*vqvae", False),
    ("vqvae codebook bigger", "vq", config("vqvae", num_vq_embeddings=16), "component 'vqvae'", False),
    ("vqvae 100k channels", "vq", config("vqvae", block_out_channels=[100_000, 100_000]), "builds more than", False),
    (
        "vqvae weights a pickle payload",
        "vq",
        both(remove(f"vqvae/{WEIGHTS}"), pickled_payload("vqvae/diffusion_pytorch_model.bin")),
        "unreadable .*diffusion_pytorch_model.bin",
        False,
    ),
]


@pytest.mark.parametrize(
    ("base", "change", "message", "via_diffusers"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_folders_are_refused_without_running_code(base, change, message, via_diffusers, copy_of):
    folder = copy_of(base)
    change(folder)
    loaders = [CLASSES[base].from_pretrained, load_pipeline] + ([DiffusionPipeline.from_pretrained] * via_diffusers)
    for load in loaders:
        with pytest.raises(ValueError, match=message):
            load(folder)
        assert not (folder / "MARKER").exists()


def test_a_pickle_next_to_safetensors_is_never_read(copy_of, saved):
    folder = copy_of("px")
    pickled_payload("prior/diffusion_pytorch_model.bin")(folder)
    pipe = PixelPriorPipeline.from_pretrained(folder)
    assert not (folder / "MARKER").exists()
    assert torch.equal(latents(pipe), latents(PixelPriorPipeline.from_pretrained(saved["px"])))
    with pytest.raises(ValueError, match="unreadable .*diffusion_pytorch_model.bin"):
        PixelPriorPipeline.from_pretrained(folder, use_safetensors=False)
    assert not (folder / "MARKER").exists()


def test_vqvae_that_does_not_fit_the_prior(copy_of):
    folder = copy_of("vq")
    config("prior", num_values=16)(folder)  # the prior's own weights change shape: refused as a mismatch first
    with pytest.raises(ValueError, match="match the config of component 'prior'"):
        VQPriorPipeline.from_pretrained(folder)


@pytest.mark.parametrize("change", [index(_class_name=["evil", "X"]), index(prior=["diffusers", "UNet2DModel"])])
def test_the_sample_command_refuses_a_bad_folder_in_one_line(change, copy_of, tmp_path, capsys):
    from pixelprior.cli import main

    folder = copy_of("px")
    change(folder)
    assert main(["sample", "--pipeline", str(folder), "--output", str(tmp_path / "grid.png")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("pixelprior sample: error: Expected") and "\n" not in error
    assert not (tmp_path / "grid.png").exists()
