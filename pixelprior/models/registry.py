"""Named model configurations: ``create_prior(name, **overrides)`` and ``list_priors()``.

Each model file registers its class with :func:`register_prior_class` and its named configurations (the
papers' among them) with :func:`register_prior` at its bottom.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_CLASSES: dict[str, type] = {}
_PRIORS: dict[str, _Entry] = {}


@dataclass(frozen=True)
class _Entry:
    cls: type
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def register_prior_class(cls: type) -> type:
    """Class decorator: make ``cls`` loadable by name (``AutoregressivePrior.from_pretrained``)."""
    _CLASSES[cls.__name__] = cls
    return cls


def register_prior(name: str, cls: type, description: str = "", **config: Any) -> None:
    """Register the configuration ``name`` of model class ``cls``."""
    if name in _PRIORS:
        raise ValueError(f"Expected a new prior name, got {name!r}, which is already registered.")
    _PRIORS[name] = _Entry(cls, dict(config), description)


def list_priors() -> list[str]:
    """Names of every registered configuration, sorted."""
    return sorted(_PRIORS)


def describe_prior(name: str) -> str:
    """The one-line description of a registered configuration."""
    return _entry(name).description


def prior_config(name: str) -> tuple[type, dict[str, Any]]:
    """The class and the keyword arguments of a registered configuration."""
    entry = _entry(name)
    return entry.cls, dict(entry.config)


def create_prior(name: str, **overrides: Any):
    """Build the registered configuration ``name``, with keyword ``overrides`` of its arguments.

    Raises:
        ValueError: for an unknown name or an argument the model's constructor does not take.

    Example:
        >>> from pixelprior import create_prior
        >>> model = create_prior("pixelcnn_mnist", hidden_channels=32, num_layers=2)
    """
    cls, config = prior_config(name)
    check_arguments(cls, overrides)
    config.update(overrides)
    return cls(**config)


def check_arguments(cls: type, arguments: Mapping[str, Any]) -> None:
    """Raise a ``ValueError`` naming the keys of ``arguments`` that the constructor of ``cls`` does not take."""
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(arguments) - accepted)
    if unknown:
        raise ValueError(f"Expected arguments of {cls.__name__} among {sorted(accepted)}, got unknown {unknown}.")


def prior_class(class_name: str | None) -> type:
    """The model class called ``class_name``."""
    if class_name not in _CLASSES:
        raise ValueError(f"Expected a pixelprior model class, one of {sorted(_CLASSES)}, got {class_name!r}.")
    return _CLASSES[class_name]


def _entry(name: str) -> _Entry:
    if name not in _PRIORS:
        raise ValueError(f"Expected a registered prior, one of {list_priors()}, got {name!r}.")
    return _PRIORS[name]
