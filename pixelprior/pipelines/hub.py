"""The Hugging Face Hub side of the pipelines: loading a repository, pushing one with its model card.

diffusers' ``DiffusionPipeline.from_pretrained`` downloads a Hub repository only when every component belongs to a
library it knows; a ``["pixelprior", "PixelCNN"]`` component makes it refuse. :class:`HubPipelineMixin` therefore
downloads the repository itself with :func:`huggingface_hub.snapshot_download` (only ``*.json``, ``*.safetensors``
and ``*.md`` files: no pickle is ever fetched) and hands diffusers the local folder, loading with
``use_safetensors=True``.

``push_to_hub`` saves the pipeline and a model card (``README.md``, from the Jinja template
``integrations/hub/model_card_template.md``) whose YAML header says ``library_name: pixelprior``, then uploads the
folder. :func:`save_model_card` writes the card alone, so it can be checked without a network.
"""

from __future__ import annotations

import json
import os
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import ModelCard, ModelCardData

LIBRARY_NAME = "pixelprior"
# what a pipeline repository holds; pickled weights (*.bin, *.pt, *.ckpt) are never downloaded
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.md"]
_TEMPLATE = Path("integrations") / "hub" / "model_card_template.md"


def default_template_path() -> Path:
    """``integrations/hub/model_card_template.md``: of the source checkout (editable installs), else the copy a wheel
    installs under ``<prefix>/share/pixelprior/`` (``[tool.setuptools.data-files]`` in ``pyproject.toml``)."""
    checkout = Path(__file__).resolve().parents[2] / _TEMPLATE
    installed = Path(sysconfig.get_path("data")) / "share" / "pixelprior" / "hub" / _TEMPLATE.name
    return checkout if checkout.is_file() else installed


def resolve_pretrained_path(
    pretrained_model_name_or_path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> str:
    """A local pipeline folder: the argument itself when it is a folder, else a snapshot of that Hub repository.

    The snapshot lives in the Hugging Face cache (``cache_dir`` or ``HF_HUB_CACHE``); with ``local_files_only=True``
    (or ``HF_HUB_OFFLINE=1``) it is read from the cache without a network.
    """
    path = os.fspath(pretrained_model_name_or_path)
    if os.path.isdir(path):
        return path
    return huggingface_hub.snapshot_download(
        path,
        revision=revision,
        cache_dir=cache_dir,
        token=token,
        local_files_only=local_files_only,
        force_download=force_download,
        allow_patterns=ALLOW_PATTERNS,
    )


def _card_variables(pipeline: Any, repo_id: str) -> dict[str, Any]:
    prior = pipeline.prior
    vqvae = getattr(pipeline, "vqvae", None)
    num_classes = prior.config.get("num_classes")
    return {
        "repo_id": repo_id,
        "repo_name": repo_id.split("/")[-1],
        "pipeline_class": type(pipeline).__name__,
        "prior_class": type(prior).__name__,
        "num_parameters": f"{sum(p.numel() for p in prior.parameters()):,}",
        "grid": f"{prior.in_channels}x{prior.grid_size[0]}x{prior.grid_size[1]}",
        "num_values": prior.num_values,
        "description": "over the codes of a VQ-VAE, decoded by it" if vqvae is not None else "over pixels",
        "conditioning": f"{num_classes} classes" if num_classes else "unconditional",
        "class_example": list(range(min(num_classes, 4))) if num_classes else None,
        "vqvae_class": type(vqvae).__name__ if vqvae is not None else None,
    }


def save_model_card(
    save_directory: str | os.PathLike,
    pipeline: Any,
    repo_id: str,
    *,
    tags: list[str] | None = None,
    license: str | None = None,
    extra: str | None = None,
    template_path: str | os.PathLike | None = None,
) -> ModelCard:
    """Write ``README.md`` describing ``pipeline`` into ``save_directory`` (YAML header: ``library_name: pixelprior``).

    Args:
        save_directory: the folder (usually the one ``save_pretrained`` just wrote).
        pipeline: a ``PixelPriorPipeline`` or ``VQPriorPipeline``.
        repo_id: the Hub repository the card describes (used in its loading snippet).
        tags: extra Hub tags.
        license: a Hub license id such as ``"apache-2.0"``.
        extra: Markdown appended to the card (training details, metrics).
        template_path: a Jinja template; ``integrations/hub/model_card_template.md`` by default.

    Returns:
        The written :class:`huggingface_hub.ModelCard`.
    """
    template_path = Path(template_path) if template_path is not None else default_template_path()
    if not template_path.is_file():
        raise ValueError(f"Expected a model card template file, got {str(template_path)!r} (no such file).")
    pipeline_tag = "unconditional-image-generation"
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag=pipeline_tag,
        license=license,
        tags=[LIBRARY_NAME, "autoregressive", "pixelcnn", type(pipeline.prior).__name__, *(tags or [])],
    )
    card = ModelCard.from_template(
        card_data, template_path=str(template_path), extra=extra, **_card_variables(pipeline, repo_id)
    )
    card.save(os.path.join(save_directory, "README.md"))
    return card


def _split_download_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the keyword arguments meant for :func:`resolve_pretrained_path` out of ``kwargs``."""
    keys = ("cache_dir", "revision", "token", "local_files_only", "force_download")
    return {key: kwargs.pop(key) for key in keys if key in kwargs}


def load_pipeline(pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
    """Load a saved pixelprior pipeline of whichever class its ``model_index.json`` names.

    Args:
        pretrained_model_name_or_path: a folder written by ``save_pretrained`` (or ``pixelprior train``), or a Hub id.
        kwargs: as for ``from_pretrained``.

    Returns:
        A :class:`~pixelprior.PixelPriorPipeline` or :class:`~pixelprior.VQPriorPipeline`.
    """
    from .pipeline_pixel_prior import PixelPriorPipeline
    from .pipeline_vq_prior import VQPriorPipeline

    classes = {cls.__name__: cls for cls in (PixelPriorPipeline, VQPriorPipeline)}
    folder = resolve_pretrained_path(pretrained_model_name_or_path, **_split_download_kwargs(kwargs))
    index = os.path.join(folder, "model_index.json")
    if not os.path.isfile(index):
        raise ValueError(f"Expected a pipeline folder with a model_index.json, got {folder!r}.")
    with open(index) as f:
        name = json.load(f).get("_class_name")
    if name not in classes:
        raise ValueError(f"Expected a pipeline of class {sorted(classes)}, got {name!r} in {index}.")
    return classes[name].from_pretrained(folder, **kwargs)


class HubPipelineMixin:
    """``from_pretrained`` that also takes Hub repository ids, and ``push_to_hub`` with a pixelprior model card.

    Mixed into the pipelines before ``DiffusionPipeline``.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """Load a pipeline from a folder written by ``save_pretrained`` or from a Hub repository id.

        Args:
            pretrained_model_name_or_path: a local folder, or ``"user/repo"`` on the Hub (downloaded with
                :func:`huggingface_hub.snapshot_download` into the Hugging Face cache).
            kwargs: ``cache_dir``, ``revision``, ``token``, ``local_files_only``, ``force_download`` reach the
                download; the rest (``torch_dtype``, ...) reach ``DiffusionPipeline.from_pretrained``.
        """
        folder = resolve_pretrained_path(pretrained_model_name_or_path, **_split_download_kwargs(kwargs))
        kwargs.setdefault("use_safetensors", True)
        return super().from_pretrained(folder, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        license: str | None = None,
        tags: list[str] | None = None,
        extra: str | None = None,
    ) -> str:
        """Save the pipeline (safetensors) and its model card, and upload both to ``repo_id`` on the Hub.

        Returns:
            The URL of the commit.
        """
        repo_id = huggingface_hub.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, safe_serialization=True)
            save_model_card(folder, self, repo_id, tags=tags, license=license, extra=extra)
            return huggingface_hub.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                token=token,
                commit_message=commit_message or f"Upload {type(self).__name__}",
                create_pr=create_pr,
            )
