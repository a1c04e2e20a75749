"""Every example runs end to end at a tiny size."""

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_pixel_space_example(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(EXAMPLES / "pixel_space.py"), "--output_dir", str(out), "--max_steps", "3"]
    cmd += ["--hidden_channels", "8", "--num_layers", "2", "--per_class", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    grid = Image.open(out / "samples_and_completions.png")
    # 10 class rows + 3 completion rows of 2 digits (28 px, 2 px padding, scale 2).
    assert grid.size == (2 * (2 * 30 + 2), 2 * (13 * 30 + 2))
    assert (out / "model_index.json").exists()


def _run_example(script: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_vqvae_and_vq_prior_examples(tmp_path):
    vqvae, prior = tmp_path / "vqvae", tmp_path / "vq_prior"
    _run_example(
        "train_vqvae.py", "--output_dir", str(vqvae), "--max_steps", "2", "--block_out_channels", "4", "8", "8"
    )
    assert (vqvae / "config.json").exists() and (vqvae / "diffusion_pytorch_model.safetensors").exists()
    args = ["--vqvae", str(vqvae), "--output_dir", str(prior), "--max_steps", "2", "--hidden_channels", "8"]
    _run_example("vq_prior.py", *args, "--num_layers", "2", "--per_class", "2", "--max_eval_samples", "20")
    grid = Image.open(prior / "samples.png")
    assert grid.size == (2 * (2 * 30 + 2), 2 * (10 * 30 + 2))  # 10 rows (digits) of 2 decoded 28x28 samples
    assert (prior / "vqvae" / "config.json").exists() and (prior / "prior" / "config.json").exists()


def test_inpaint_example(tmp_path):
    out = tmp_path / "inpaint"
    args = ["--output_dir", str(out), "--max_steps", "2", "--hidden_channels", "8", "--num_layers", "2"]
    _run_example("inpaint.py", *args, "--num_digits", "3", "--max_eval_samples", "20")
    grid = Image.open(out / "inpainting.png")
    assert grid.size == (2 * (3 * 30 + 2), 2 * (4 * 30 + 2))  # original / kept / 2 completions rows of 3 digits


def test_multiscale_example(tmp_path):
    out = tmp_path / "multiscale"
    args = ["--output_dir", str(out), "--max_steps", "2", "--hidden_channels", "8", "--num_layers", "1"]
    proc = _run_example("multiscale.py", *args, "--num_samples", "3", "--max_eval_samples", "20")
    assert "test bits/dim:" in proc.stdout
    grid = Image.open(out / "samples.png")
    assert grid.size == (2 * (3 * 30 + 2), 2 * (2 * 30 + 2))  # small images (shown at full size) / full images
    assert (out / "small" / "config.json").exists() and (out / "big" / "config.json").exists()


def test_imagegpt_completion_example(tmp_path):
    """A tiny random-weight transformers Image GPT folder, converted and completing the bottom halves of photos."""
    transformers = pytest.importorskip("transformers")
    import json

    import torch

    config = transformers.ImageGPTConfig(n_embd=16, n_layer=1, n_head=2, n_positions=64, vocab_size=17)
    torch.manual_seed(0)
    transformers.ImageGPTForCausalImageModeling(config).save_pretrained(tmp_path / "igpt")
    clusters = (torch.rand(16, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1).tolist()
    (tmp_path / "igpt" / "preprocessor_config.json").write_text(json.dumps({"clusters": clusters}))
    out = tmp_path / "completion"
    args = ["--model", str(tmp_path / "igpt"), "--output_dir", str(out), "--num_crops", "3", "--num_completions", "2"]
    _run_example("imagegpt_completion.py", *args)
    grid = Image.open(out / "completions.png")
    assert grid.size == (16 * (4 * 10 + 2), 16 * (3 * 10 + 2))  # 3 rows of 4 8x8 images (2 px padding, scale 16)
    assert grid.mode == "RGB"
