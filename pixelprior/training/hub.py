"""What a training run publishes: its model card, and with ``--push_to_hub`` its folder on the Hugging Face Hub.

The card is the pipelines' own (:func:`pixelprior.pipelines.save_model_card`, the one template) with the run's
:class:`~pixelprior.pipelines.hub.TrainingCard`: the dataset, the steps, the exact train and test bits/dim (and nats
per image for binary data), the final sample grid and the learning curve, and the test figures as the card's
``model-index``. It is written as ``README.md`` into the output folder, which is the pipeline folder.

``--push_to_hub`` checks the token and creates the repository before the first step (as diffusers' training scripts
do, so a missing token or a refused repository costs no training), and uploads the run's files after the last one:
the pipeline's components, the card, ``train_results.json``, the final sample grid and ``logs/`` (never checkpoints,
other sample grids or files the run did not write). The token (``--hub_token``, else ``HF_TOKEN`` or the login's) is a
secret option: it is passed to the Hub calls and written nowhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..data import parse_dataset
from ..pipelines.hub import TrainingCard, create_hub_repo, save_model_card, upload_to_hub
from .config import TrainConfig
from .loggers import METRICS_FILE
from .options import options_as_json

if TYPE_CHECKING:
    from .trainer import TrainResult

CARD_FILE = "README.md"


@dataclass(frozen=True)
class RunFiles:
    """The files of a finished run that its card shows and a push uploads, relative to the output folder."""

    components: tuple[str, ...]  # the pipeline's component folders: prior, vqvae, palette
    sample_grid: str | None
    curve: str | None

    def upload_patterns(self) -> list[str]:
        """``allow_patterns`` of the upload: these files only."""
        from .trainer import RESULTS_FILE

        patterns = ["model_index.json", CARD_FILE, RESULTS_FILE, METRICS_FILE]
        patterns += [f"{name}/*" for name in self.components]
        patterns += [path for path in (self.sample_grid, self.curve) if path is not None]
        return [p.replace(os.sep, "/") for p in patterns]


def hub_dataset_id(dataset: str) -> str | None:
    """The Hub id of the training data when it is a Hub dataset (``hf:NAME``, not a local folder), else None."""
    kind, arg = parse_dataset(dataset)
    if kind != "hf":
        return None
    from ..data.hub import parse_hf_spec

    name = parse_hf_spec(arg)[0]
    return None if os.path.isdir(os.path.expanduser(name)) else name


def hub_token(config: TrainConfig) -> str | None:
    """The token of the Hub calls: ``--hub_token``, else the environment's (``HF_TOKEN``) or the login's."""
    import huggingface_hub

    return config.hub_token if config.hub_token is not None else huggingface_hub.get_token()


def prepare_hub_repo(config: TrainConfig) -> str:
    """Before training (main process): check that there is a token and create (or find) the repository.

    Returns:
        The repository's full id, ``user/name``.

    Raises:
        ValueError: no token, or the Hub refused the repository (naming it and the reason).
    """
    repo_id = config.hub_model_id or os.path.basename(os.path.normpath(config.output_dir))
    token = hub_token(config)
    if token is None:
        raise ValueError(
            f"Expected a Hub token for --push_to_hub to {repo_id!r}, got none: pass --hub_token, set HF_TOKEN or run "
            "`hf auth login`."
        )
    from huggingface_hub import errors

    # HTTPError: huggingface_hub's HTTP client's errors (refused, no network); OSError: requests' (older versions)
    network_errors = (getattr(errors, "HTTPError", errors.HfHubHTTPError), errors.HfHubHTTPError, OSError)
    try:
        return create_hub_repo(repo_id, token=token, private=config.hub_private_repo or None)
    except network_errors as error:
        reason = " ".join(str(error).split()) or type(error).__name__  # the Hub's messages span several lines
        raise ValueError(
            f"Expected to create or find the Hub repository {repo_id!r} for --push_to_hub, got: {reason}"
        ) from None


def preprocessing(config: TrainConfig) -> str | None:
    """What the run did to its images, in words ("binarized", "5 bits"), or None."""
    done = []
    if config.resolution is not None:
        done.append(f"resized to {config.resolution}x{config.resolution}")
    if config.binarize:
        done.append("binarized")
    if config.num_bits is not None:
        done.append(f"{config.num_bits} bits")
    return ", ".join(done) or None


def training_card(
    config: TrainConfig, result: TrainResult, images_per_step: int, sizes: tuple[int, int], files: RunFiles
) -> TrainingCard:
    """The :class:`TrainingCard` of a finished run (``sizes``: its numbers of train and test images)."""
    return TrainingCard(
        dataset=config.dataset,
        preprocessing=preprocessing(config),
        steps=result.steps,
        images_per_step=images_per_step,
        train_bits_per_dim=result.train_bits_per_dim,
        test_bits_per_dim=result.test_bits_per_dim,
        train_nll_nats=result.train_nll_nats,
        test_nll_nats=result.test_nll_nats,
        num_train_images=sizes[0],
        num_test_images=sizes[1],
        hub_dataset=hub_dataset_id(config.dataset),
        sample_grid=files.sample_grid,
        curve=files.curve,
        config=options_as_json(config),  # without the token
    )


def write_card(folder: str, pipeline: Any, repo_id: str, card: TrainingCard) -> str:
    """Write the run's model card into ``folder`` (the output folder); returns its path."""
    save_model_card(folder, pipeline, repo_id, training=card)
    return os.path.join(folder, CARD_FILE)


def push_run(config: TrainConfig, repo_id: str, files: RunFiles, steps: int) -> str:
    """Upload the run's files (:meth:`RunFiles.upload_patterns`) from the output folder; returns the commit URL."""
    message = f"pixelprior train: {config.model_name} on {config.dataset}, {steps} steps"
    return upload_to_hub(
        config.output_dir,
        repo_id,
        token=hub_token(config),
        commit_message=message,
        allow_patterns=files.upload_patterns(),
    )
