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
checked without a network. A run of ``pixelprior train`` adds a :class:`TrainingCard` (dataset, steps, bits/dim,
the sample grid and the learning curve) to its card and, with ``--push_to_hub``, uploads its folder with
:func:`upload_run_folder`.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import EvalResult, ModelCard, ModelCardData
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


@dataclass
class TrainingCard:
    """What a training run adds to its model card: the data, the length of the run and what it measured.

    ``dataset`` is the ``--dataset`` spec and ``preprocessing`` what was done to it ("binarized"); ``sample_grid`` and
    ``curve`` are paths relative to the card's folder (shown as images); ``hub_dataset`` is the Hub id of the
    training data when it came from the Hub (the card's ``datasets`` metadata); ``config`` the run's flags (secrets
    left out).
    """

    dataset: str
    steps: int
    images_per_step: int
    train_bits_per_dim: float
    test_bits_per_dim: float
    train_nll_nats: float | None = None
    test_nll_nats: float | None = None
    num_train_images: int | None = None
    num_test_images: int | None = None
    hub_dataset: str | None = None
    sample_grid: str | None = None
    curve: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    preprocessing: str | None = None

    @property
    def dataset_name(self) -> str:
        return self.dataset + (f" ({self.preprocessing})" if self.preprocessing else "")

    def eval_results(self) -> list[EvalResult]:
        """The test figures as Hub evaluation results (the card's ``model-index``)."""
        metrics = [("bits_per_dim", "test bits/dim", self.test_bits_per_dim)]
        if self.test_nll_nats is not None:
            metrics.append(("nll", "test NLL (nats/image)", self.test_nll_nats))
        return [
            EvalResult(
                task_type="unconditional-image-generation",
                dataset_type=self.hub_dataset or self.dataset,
                dataset_name=self.dataset_name,
                dataset_split="test",
                metric_type=metric,
                metric_name=name,
                metric_value=round(value, 6),
            )
            for metric, name, value in metrics
        ]

    def variables(self) -> dict[str, Any]:
        """The template's ``training`` variable: the figures formatted as the card shows them."""

        def nats(value: float | None) -> str:
            return f"{value:.2f}" if value is not None else "-"

        return {
            "dataset": self.dataset_name,
            "steps": f"{self.steps:,}",
            "images_per_step": self.images_per_step,
            "num_train_images": f"{self.num_train_images:,}" if self.num_train_images is not None else "-",
            "num_test_images": f"{self.num_test_images:,}" if self.num_test_images is not None else "-",
            "train_bits_per_dim": f"{self.train_bits_per_dim:.4f}",
            "test_bits_per_dim": f"{self.test_bits_per_dim:.4f}",
            "train_nll_nats": nats(self.train_nll_nats),
            "test_nll_nats": nats(self.test_nll_nats),
            "sample_grid": self.sample_grid,
            "curve": self.curve,
            "config": json.dumps(self.config, indent=2, sort_keys=True),
        }


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
    training: TrainingCard | None = None,
) -> ModelCard:
    """Write ``README.md`` describing ``pipeline`` into ``save_directory`` (YAML header: ``library_name: pixelprior``).

    Args:
        save_directory: the folder (usually the one ``save_pretrained`` just wrote).
        pipeline: a ``PixelPriorPipeline`` or ``VQPriorPipeline``.
        repo_id: the Hub repository the card describes (used in its loading snippet).
        tags: extra Hub tags.
        license: a Hub license id such as ``"apache-2.0"``.
        extra: Markdown appended to the card.
        template_path: a Jinja template file; the template shipped with pixelprior by default.
        training: the run that trained the pipeline (``pixelprior train``): its data, steps, bits/dim, sample grid
            and curve, and its test figures as the card's ``model-index``.

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
        datasets=[training.hub_dataset] if training is not None and training.hub_dataset else None,
        model_name=repo_id.split("/")[-1] if training is not None else None,
        eval_results=training.eval_results() if training is not None else None,
    )
    variables = _card_variables(pipeline, repo_id)
    variables["training"] = training.variables() if training is not None else None
    card = ModelCard.from_template(card_data, template_str=template, extra=extra, **variables)
    card.save(os.path.join(save_directory, "README.md"))
    return card


def create_hub_repo(repo_id: str, *, token: str | None = None, private: bool | None = None) -> str:
    """Create the model repository ``repo_id`` on the Hub (or find it) and return its full id, ``user/name``."""
    return huggingface_hub.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id


def upload_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    commit_message: str,
    allow_patterns: list[str] | None = None,
    create_pr: bool = False,
) -> str:
    """Upload ``folder`` (only the files matching ``allow_patterns``, when given) to ``repo_id``; returns the commit
    URL. The one call that reaches the network when a pipeline or a run is pushed."""
    return huggingface_hub.upload_folder(
        repo_id=repo_id,
        folder_path=os.fspath(folder),
        token=token,
        commit_message=commit_message,
        allow_patterns=allow_patterns,
        create_pr=create_pr,
    )


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
        repo_id = create_hub_repo(repo_id, token=token, private=private)
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, safe_serialization=True)
            save_model_card(folder, self, repo_id, tags=tags, license=license, extra=extra)
            message = commit_message or f"Upload {type(self).__name__}"
            return upload_to_hub(folder, repo_id, token=token, commit_message=message, create_pr=create_pr)
