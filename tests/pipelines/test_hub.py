"""The Hub side, without a network: loading a repository id from a real Hugging Face cache, the model card, push."""

from __future__ import annotations

import os
import shutil

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache  # what snapshot_download caches

from pixelprior import PixelPriorPipeline, VQPriorPipeline, create_prior
from pixelprior.pipelines import load_pipeline, save_model_card

from .test_pipeline_vq_prior import tiny_prior, tiny_vqvae

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(cache_dir, repo_id: str, folder) -> None:
    """Lay ``folder`` out as huggingface_hub's cache holds a downloaded model repo at revision ``main``.

    With the tree listing a download caches, so that offline loaders can list the repository's files as they
    would online (diffusers' ``DiffusionPipeline.download`` then runs its whole file selection).
    """
    repo = os.path.join(cache_dir, "models--" + repo_id.replace("/", "--"))
    snapshot = os.path.join(repo, "snapshots", COMMIT)
    shutil.copytree(folder, snapshot)
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(COMMIT)
    files = [os.path.relpath(os.path.join(r, n), snapshot) for r, _, names in os.walk(snapshot) for n in names]
    entries = {
        f: TreeCacheEntry(size=os.path.getsize(os.path.join(snapshot, f)), blob_id=f"{i:040x}")
        for i, f in enumerate(files)
    }
    write_tree_cache(repo, COMMIT, entries)
    assert {f.path for f in huggingface_hub.get_cached_repo_tree(repo_id, cache_dir=cache_dir)} == set(files)


def _latent(pipe, seed=0):
    return pipe(batch_size=2, generator=torch.Generator().manual_seed(seed), output_type="latent", progress=False)


def test_from_pretrained_with_a_hub_repo_id(tmp_path, monkeypatch):
    pipe = VQPriorPipeline(tiny_prior(), tiny_vqvae())
    pipe.save_pretrained(tmp_path / "saved")
    cache = tmp_path / "cache"
    _hub_cache(cache, "someone/tiny-vq-prior", tmp_path / "saved")

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load (pickle) was called")

    monkeypatch.setattr(torch, "load", no_pickle)
    # local_files_only: snapshot_download resolves the repo id in the cache, as with HF_HUB_OFFLINE=1.
    loaded = VQPriorPipeline.from_pretrained("someone/tiny-vq-prior", cache_dir=cache, local_files_only=True)
    assert torch.equal(_latent(loaded).images, _latent(pipe).images)
    assert type(load_pipeline("someone/tiny-vq-prior", cache_dir=cache, local_files_only=True)) is VQPriorPipeline
    with pytest.raises(ValueError, match="'someone/not-there': no such folder, and the repository cannot be found"):
        VQPriorPipeline.from_pretrained("someone/not-there", cache_dir=cache, local_files_only=True)


def test_save_model_card(tmp_path):
    pipe = PixelPriorPipeline(create_prior("pixelcnn_mnist", hidden_channels=8, num_layers=1, num_classes=10))
    save_model_card(tmp_path, pipe, "someone/digits", license="apache-2.0", extra="Trained for 3 steps.")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "pixelprior" and card.data.license == "apache-2.0"
    assert "PixelCNN" in card.data.tags
    assert 'PixelPriorPipeline.from_pretrained("someone/digits")' in card.text
    assert "class_labels=[0, 1, 2, 3]" in card.text and "Trained for 3 steps." in card.text
    with pytest.raises(ValueError, match="template"):
        save_model_card(tmp_path, pipe, "someone/digits", template_path=tmp_path / "missing.md")


def test_push_to_hub_uploads_weights_and_card(tmp_path, monkeypatch):
    uploaded = tmp_path / "uploaded"

    class Repo:
        repo_id = "someone/tiny-vq-prior"

    def create_repo(repo_id, **kwargs):
        return Repo()

    def upload_folder(*, repo_id, folder_path, **kwargs):  # the network boundary: keep a copy of what is sent
        shutil.copytree(folder_path, uploaded)
        return f"https://huggingface.co/{repo_id}/commit/{COMMIT}"

    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    pipe = VQPriorPipeline(tiny_prior(), tiny_vqvae())
    assert pipe.push_to_hub("tiny-vq-prior").endswith(COMMIT)
    names = sorted(os.path.relpath(os.path.join(r, n), uploaded) for r, _, ns in os.walk(uploaded) for n in ns)
    assert all(name.endswith((".json", ".safetensors", ".md")) for name in names), names
    card = ModelCard.load(uploaded / "README.md")
    assert card.data.library_name == "pixelprior" and "VQModel" in card.text
    assert torch.equal(_latent(VQPriorPipeline.from_pretrained(uploaded)).images, _latent(pipe).images)
