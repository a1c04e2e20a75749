"""Starting a run from a trained pipeline: ``--init_from DIR_OR_REPO`` and ``--model_config RUN_FOLDER``.

``--init_from`` fine-tunes: the pipeline folder (``pixelprior train``'s output, ``pixelprior convert``'s, or a Hub
repository of either) is read through the checked loader (:func:`pixelprior.pipelines.load_pipeline`: safetensors, or
``.bin`` through ``torch.load(weights_only=True)``; no code and no other pickle), and the run's model is a fresh
float32 prior of the pipeline's class and configuration holding its weights. The architecture therefore comes from
the pipeline: ``--model`` and ``--model_config`` cannot also be given, and ``--model_kwargs`` may change only what
leaves every weight's meaning intact (:data:`FINE_TUNING_KWARGS`: dropout), or repeat the pipeline's own values. A
pipeline with a colour palette (a converted Image GPT) brings it too: the run encodes its RGB images with it and
saves it again.

``--model_config`` reads the architecture only: a ``config.json``, a prior's folder, or a run (pipeline) folder, whose
``prior/config.json`` it takes.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from ..models import AutoregressivePrior

if TYPE_CHECKING:
    from .config import TrainConfig

# constructor arguments that --model_kwargs may change when fine-tuning: they change no weight's shape or meaning
FINE_TUNING_KWARGS = ("dropout",)
PIPELINE_INDEX = "model_index.json"


def model_config_file(path: str) -> str:
    """The ``config.json`` that ``--model_config path`` names: the file itself, a prior's folder's, or a pipeline
    (run) folder's ``prior/config.json``.

    Raises:
        ValueError: for a path that is none of these.
    """
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, PIPELINE_INDEX)):
            file = os.path.join(path, "prior", "config.json")
            if not os.path.isfile(file):
                raise ValueError(f"Expected --model_config's pipeline folder {path!r} to hold prior/config.json.")
            return file
        path = os.path.join(path, "config.json")
    if not os.path.isfile(path):
        raise ValueError(
            f"Expected --model_config to be a JSON file, a prior's folder or a run folder, got {path!r}: no such file."
        )
    return path


def _same(key: str, a: Any, b: Any) -> bool:
    """Equal as configurations compare: JSON values (a tuple equals the list it is saved as), and ``sample_size``
    ``n`` equal to ``(n, n)`` (DESIGN.md: an int or ``(H, W)``)."""

    def normal(value: Any) -> Any:
        if key == "sample_size" and isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]
        return json.loads(json.dumps(value))

    return normal(a) == normal(b)


def check_fine_tuning_kwargs(saved: dict[str, Any], overrides: dict[str, Any], source: str) -> None:
    """Refuse ``--model_kwargs`` that would change the architecture of the ``--init_from`` pipeline.

    Raises:
        ValueError: naming each refused argument with its value and the pipeline's.
    """
    changed = {k: v for k, v in overrides.items() if k not in FINE_TUNING_KWARGS and not _same(k, v, saved.get(k))}
    if changed:
        listed = ", ".join(f"{k}={v!r} (the pipeline's: {saved.get(k, 'none')!r})" for k, v in changed.items())
        raise ValueError(
            f"Expected --model_kwargs with --init_from to change only {list(FINE_TUNING_KWARGS)} (the architecture "
            f"and its weights come from {source!r}), got {listed}. Train a new model with --model_config {source} "
            "instead to change the architecture."
        )


def load_init_pipeline(config: TrainConfig) -> Any:
    """The ``--init_from`` pipeline, read through the checked loader (``--hub_token`` for a private repository)."""
    from ..pipelines import load_pipeline

    download = {"token": config.hub_token} if config.hub_token is not None else {}
    return load_pipeline(config.init_from, **download)


def prior_from_pipeline(config: TrainConfig, pipeline: Any | None = None) -> AutoregressivePrior:
    """The ``--init_from`` pipeline's prior as a fresh float32 model (``--model_kwargs``: dropout only) holding its
    weights. ``pipeline``: the loaded pipeline, else it is loaded."""
    from ..models.registry import check_arguments

    pipeline = load_init_pipeline(config) if pipeline is None else pipeline
    trained = pipeline.prior
    saved = {k: v for k, v in trained.config.items() if not k.startswith("_")}
    check_fine_tuning_kwargs(saved, config.model_kwargs, config.init_from)
    cls = type(trained)
    kwargs = {**saved, **config.model_kwargs}
    check_arguments(cls, kwargs)
    prior = cls(**kwargs)
    prior.load_state_dict(trained.state_dict())  # strict; copies into float32 whatever dtype was saved
    return prior
