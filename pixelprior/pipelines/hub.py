"""The Hugging Face Hub side of the pipelines: resolving a folder or repository id, pushing with a model card.

:func:`resolve_pretrained_path` turns the argument of ``from_pretrained`` into a local folder: the folder itself, or
a snapshot of a Hub repository downloaded with :func:`huggingface_hub.snapshot_download` (only ``*.json``,
``*.safetensors`` and ``*.md`` files, plus ``*.bin`` weights when the caller asks for them with
``use_safetensors=False``: never code). A path that is neither a folder nor a repository is a ``ValueError``
naming it.

``push_to_hub`` saves the pipeline and a model card (``README.md``, from the Jinja template
``model_card_template.md`` that ships inside this package and is read with :mod:`importlib.resources`, so it is
found however pixelprior was installed: editable, wheel, ``--user`` or ``--target``) whose YAML header says
``library_name: pixelprior``, then uploads the folder. :func:`save_model_card` writes the card alone, so it can be
checked without a network.
"""

from __future__ import annotations

import importlib.resources
import os
import tempfile
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.errors import (
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .library import LIBRARY

LIBRARY_NAME = LIBRARY
# what a pipeline repository download fetches; pickled weights (*.bin) only on request, loaded with weights_only
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.md"]
TEMPLATE_NAME = "model_card_template.md"
# the keyword arguments of from_pretrained that reach resolve_pretrained_path
DOWNLOAD_KWARGS = ("cache_dir", "revision", "token", "local_files_only", "force_download")


def default_template() -> str:
    """The model card template shipped as package data: ``pixelprior/pipelines/model_card_template.md``."""
    return importlib.resources.files(__package__).joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")


def resolve_pretrained_path(
    pretrained_model_name_or_path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    allow_pickle: bool = False,
) -> str:
    """A local pipeline folder: the argument itself when it is a folder, else a snapshot of that Hub repository.

    The snapshot lives in the Hugging Face cache (``cache_dir`` or ``HF_HUB_CACHE``); with ``local_files_only=True``
    (or ``HF_HUB_OFFLINE=1``) it is read from the cache without a network. ``allow_pickle`` also downloads ``*.bin``
    weights (read later with ``weights_only=True``).

    Raises:
        ValueError: for a path that is not a folder and not a repository id, or a repository that cannot be found
            (on the Hub, or in the cache when offline), naming it.
    """
    if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
        raise ValueError(
            f"Expected a folder or a Hub repository id, got a {type(pretrained_model_name_or_path).__name__}."
        )
    path = os.fspath(pretrained_model_name_or_path)
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise ValueError(f"Expected a pipeline folder or a Hub repository id, got {path!r}, a file.")
    try:
        huggingface_hub.utils.validate_repo_id(path)
    except HFValidationError:
        raise ValueError(f"Expected a pipeline folder or a Hub repository id, got {path!r}: no such folder.") from None
    try:
        return huggingface_hub.snapshot_download(
            path,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            force_download=force_download,
            allow_patterns=ALLOW_PATTERNS + (["*.bin"] if allow_pickle else []),
            library_name=LIBRARY,
        )
    except (LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise ValueError(
            f"Expected a pipeline folder or a Hub repository id, got {path!r}: no such folder, and the repository "
            f"cannot be found ({type(error).__name__}: {error})"
        ) from error


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
            template_path: a Jinja template file; the template shipped with pixelprior by default.

    Returns:
        The written :class:`huggingface_hub.ModelCard`.
    """
    if template_path is None:
        template = default_template()
    elif Path(template_path).is_file():
        template = Path(template_path).read_text(encoding="utf-8")
    else:
        raise ValueError(f"Expected a model card template file, got {os.fspath(template_path)!r} (no such file).")
    pipeline_tag = "unconditional-image-generation"
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag=pipeline_tag,
        license=license,
        tags=[LIBRARY_NAME, "autoregressive", "pixelcnn", type(pipeline.prior).__name__, *(tags or [])],
    )
    card = ModelCard.from_template(card_data, template_str=template, extra=extra, **_card_variables(pipeline, repo_id))
    card.save(os.path.join(save_directory, "README.md"))
    return card


class HubPipelineMixin:
    """``push_to_hub`` with a pixelprior model card. Mixed into the pipelines before ``DiffusionPipeline``."""

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
