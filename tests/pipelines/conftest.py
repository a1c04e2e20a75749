"""Saved pipeline folders shared by the loading tests: written once per session, copied before a test changes one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from pixelprior import PixelPriorPipeline, VQPriorPipeline, create_prior

from .test_pipeline_vq_prior import tiny_prior, tiny_vqvae


def tiny_pixel_pipeline(**overrides) -> PixelPriorPipeline:
    torch.manual_seed(0)
    config = {"hidden_channels": 8, "num_layers": 1, "sample_size": 6, **overrides}
    return PixelPriorPipeline(create_prior("pixelcnn_mnist", **config))


def latents(pipe, seed: int = 0, batch_size: int = 2, **kwargs) -> torch.Tensor:
    """The ``(B, C, H, W)`` long grid a seeded call draws."""
    generator = torch.Generator().manual_seed(seed)
    return pipe(batch_size=batch_size, generator=generator, output_type="latent", progress=False, **kwargs).images


@pytest.fixture(scope="session")
def saved(tmp_path_factory) -> dict[str, Path]:
    """``{"px": folder of a PixelPriorPipeline, "vq": folder of a VQPriorPipeline}``, each with its pipeline."""
    root = tmp_path_factory.mktemp("saved")
    folders = {}
    for name, pipe in (("px", tiny_pixel_pipeline()), ("vq", VQPriorPipeline(tiny_prior(), tiny_vqvae()))):
        pipe.save_pretrained(root / name)
        folders[name] = root / name
    return folders


@pytest.fixture
def copy_of(saved, tmp_path):
    """``copy_of("px")``: a fresh copy of a saved folder that the test may change."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(saved[name], target)
        return target

    return copy
