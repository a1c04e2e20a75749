"""Loading pipeline folders the ways diffusers users do: DiffusionPipeline.from_pretrained, .bin weights, bad paths."""

from __future__ import annotations

import json

import diffusers
import pytest
import torch
from diffusers import DiffusionPipeline

from pixelprior import PixelPriorPipeline, VQPriorPipeline, create_prior
from pixelprior.models.registry import prior_config
from pixelprior.pipelines import library, load_pipeline
from tests.conftest import PRIOR_NAMES, conditioning, random_x, tiny_prior

from .conftest import latents
from .test_hub import _hub_cache


def test_diffusion_pipeline_from_pretrained_returns_the_class_the_folder_names(saved, tmp_path):
    # after `import pixelprior`: the classes are attributes of the diffusers module, where diffusers looks them up
    assert diffusers.PixelPriorPipeline is PixelPriorPipeline and diffusers.VQPriorPipeline is VQPriorPipeline
    for name, cls in (("px", PixelPriorPipeline), ("vq", VQPriorPipeline)):
        expected = latents(cls.from_pretrained(saved[name]))
        pipe = DiffusionPipeline.from_pretrained(saved[name])
        assert type(pipe) is cls and torch.equal(latents(pipe), expected)
        # a Hub repository id (a real huggingface_hub cache, offline), through diffusers' own download
        _hub_cache(tmp_path / "cache", f"someone/{name}", saved[name])
        hub = {"cache_dir": tmp_path / "cache", "local_files_only": True}
        for from_hub in (
            DiffusionPipeline.from_pretrained(f"someone/{name}", **hub),
            load_pipeline(f"someone/{name}", **hub),
        ):
            assert type(from_hub) is cls and torch.equal(latents(from_hub), expected)
            assert from_hub.config._name_or_path == f"someone/{name}"


def test_diffusion_pipeline_from_pretrained_checks_the_index_before_loading(copy_of):
    folder = copy_of("px")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "prior": ["diffusers", "UNet2DModel"]}))
    with pytest.raises(ValueError, match=r"component 'prior' of PixelPriorPipeline to be \[\"pixelprior\""):
        DiffusionPipeline.from_pretrained(folder)


def test_a_folder_of_the_other_pipeline_class_is_refused_and_load_pipeline_picks_it(saved):
    with pytest.raises(ValueError, match="Expected a PixelPriorPipeline folder, got a VQPriorPipeline folder"):
        PixelPriorPipeline.from_pretrained(saved["vq"])
    with pytest.raises(ValueError, match="Expected a VQPriorPipeline folder, got a PixelPriorPipeline folder"):
        VQPriorPipeline.from_pretrained(saved["px"])
    assert type(load_pipeline(saved["vq"])) is VQPriorPipeline
    assert type(load_pipeline(saved["px"])) is PixelPriorPipeline


def test_missing_paths_are_named(tmp_path, saved):
    for path in ("./nope", str(tmp_path / "nope"), "../a/b/c"):
        with pytest.raises(ValueError, match=f"got {path!r}: no such folder"):
            PixelPriorPipeline.from_pretrained(path)
        with pytest.raises(ValueError, match=f"got {path!r}: no such folder"):
            load_pipeline(path)
    with pytest.raises(ValueError, match="a file"):
        PixelPriorPipeline.from_pretrained(saved["px"] / "model_index.json")
    with pytest.raises(ValueError, match="got a int"):
        PixelPriorPipeline.from_pretrained(3)


@pytest.mark.parametrize("name", ["px", "vq"])
def test_bin_weights_round_trip_through_weights_only(name, saved, tmp_path, monkeypatch):
    pipe = load_pipeline(saved[name])
    pipe.save_pretrained(tmp_path / "bin", safe_serialization=False)
    files = sorted(p.name for p in (tmp_path / "bin").rglob("*") if p.is_file())
    assert "diffusion_pytorch_model.bin" in files and not any(f.endswith(".safetensors") for f in files)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = type(pipe).from_pretrained(tmp_path / "bin")
    assert calls and all(weights_only is True for weights_only in calls)
    assert torch.equal(latents(loaded), latents(pipe))
    with pytest.raises(ValueError, match=r"weights of component 'prior' .* as one of \['diffusion_pytorch_model.safe"):
        type(pipe).from_pretrained(tmp_path / "bin", use_safetensors=True)


def test_from_pretrained_arguments(saved):
    pipe = PixelPriorPipeline.from_pretrained(saved["px"], torch_dtype={"prior": torch.float64})
    assert pipe.prior.dtype == torch.float64
    assert PixelPriorPipeline.from_pretrained(saved["px"], torch_dtype=torch.float64).prior.dtype == torch.float64
    other = create_prior("pixelcnn_mnist", hidden_channels=4, num_layers=1, sample_size=6)
    assert PixelPriorPipeline.from_pretrained(saved["px"], prior=other).prior is other
    for code in ({"custom_pipeline": "evil"}, {"trust_remote_code": True}):
        with pytest.raises(ValueError, match="run no code from a folder or repository"):
            PixelPriorPipeline.from_pretrained(saved["px"], **code)
    with pytest.raises(ValueError, match=r"got unknown \['dtpye'\]"):
        PixelPriorPipeline.from_pretrained(saved["px"], dtpye=torch.float64)
    with pytest.raises(ValueError, match="Expected the component 'prior' to be a AutoregressivePrior, got str"):
        PixelPriorPipeline.from_pretrained(saved["px"], prior="a prior")


# one registered configuration per model class: the folder checks (meta build, state dict == weights) hold for each
ONE_PER_CLASS = sorted({prior_config(name)[0].__name__: name for name in PRIOR_NAMES}.values())


@pytest.mark.parametrize("name", ONE_PER_CLASS)
def test_every_model_class_round_trips_through_the_checked_loader(name, tmp_path):
    prior = tiny_prior(name, dtype=torch.float32)
    PixelPriorPipeline(prior).save_pretrained(tmp_path)
    loaded = load_pipeline(tmp_path).prior
    x = random_x(prior, 2)
    kwargs = conditioning(prior, 2)
    with torch.no_grad():
        assert type(loaded) is type(prior) and torch.equal(loaded.log_prob(x, **kwargs), prior.log_prob(x, **kwargs))


def test_a_pipeline_name_diffusers_defines_is_not_shadowed(monkeypatch):
    monkeypatch.setattr(library, "PIPELINES", dict(library.PIPELINES))
    own = diffusers.DDPMPipeline
    impostor = type("DDPMPipeline", (), {})
    assert library.register_pipeline(impostor) is impostor
    assert diffusers.DDPMPipeline is own and library.PIPELINES["DDPMPipeline"] is impostor
