"""What a pipeline folder may hold, checked before anything in it is loaded.

A pipeline folder is ``model_index.json`` plus one sub-folder per component (``prior/``, ``vqvae/``), each a
``config.json`` and its weights. Everything in it is data from whoever wrote it, so before a single weight is read:

* ``model_index.json`` is a JSON object whose ``_class_name`` is a string naming the pipeline class, and whose
  entries are exactly that class's components, each ``[library, class]`` with the library and class the pipeline
  takes (a pixelprior prior; for ``vqvae`` a diffusers ``VQModel``). diffusers would import any library a folder
  names, or run a custom pipeline's ``.py`` file: pixelprior resolves classes only from its own tables.
* each component's ``config.json`` names that same class and, for a prior, only arguments the class takes;
* the weights file is the one diffusers will read: safetensors, or a ``.bin`` only where the caller allows it
  (diffusers reads it with ``torch.load(weights_only=True)``: plain tensors, no objects);
* the network its ``config.json`` describes is built on the meta device (no memory), under a budget of tensor
  elements and operations proportional to the weights file, so a config cannot make loading allocate without
  bound; for a prior its state dict must then match the weights file key for key and shape for shape.

Every failure is a ``ValueError`` naming the component and the file.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import safetensors
import torch
from diffusers import ModelMixin
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME
from torch.utils._python_dispatch import TorchDispatchMode

from ..models.registry import prior_class
from .library import LIBRARY

INDEX_NAME = "model_index.json"
CONFIG_NAME = "config.json"
# model_index.json and config.json are a few hundred bytes; a larger one is not a pipeline's
MAX_JSON_BYTES = 1 << 20
# building a network on the meta device may touch this many times the elements of its weights file (masks,
# intermediate tensors of the initialisation: at most 8x for the registered models, tiny or full size) plus a floor
BUDGET_ELEMENTS_PER_WEIGHT, BUDGET_ELEMENTS_FLOOR = 32, 1 << 26
# ... and run this many tensor operations per weights-file tensor (at most 16 for the registered models; a tiny one
# runs at most 700 in all) plus a floor
BUDGET_OPS_PER_TENSOR, BUDGET_OPS_FLOOR = 64, 2_000


@dataclass(frozen=True)
class Component:
    """A component a pipeline takes: the library ``model_index.json`` must name and the base class it must be.

    For a pixelprior prior (``library="pixelprior"`` and a ``ModelMixin`` base) any registered prior class
    (``pixelprior.models.registry``) that subclasses ``base`` is accepted; otherwise only ``base`` itself.
    An ``optional`` component may be absent: saved as ``[null, null]`` (diffusers' way) or left out.
    """

    library: str
    base: type
    optional: bool = False

    @property
    def is_prior(self) -> bool:
        return self.library == LIBRARY and issubclass(self.base, ModelMixin)

    @property
    def is_model(self) -> bool:
        """A ``config.json`` + weights folder (a prior, a diffusers model); else a data component such as the
        palette, one safetensors file its class's own ``from_pretrained`` reads and checks."""
        return issubclass(self.base, ModelMixin)

    def resolve(self, class_name: Any) -> type | None:
        """The class ``class_name`` names for this component, or ``None`` when it is not one it may be."""
        if not isinstance(class_name, str):
            return None
        if self.is_prior:
            try:
                cls = prior_class(class_name)
            except ValueError:
                return None
            return cls if issubclass(cls, self.base) else None
        return self.base if class_name == self.base.__name__ else None

    @property
    def exact_state_dict(self) -> bool:
        # pixelprior writes its priors' files itself; a diffusers model may be in an older layout that diffusers
        # converts while loading (renamed attention keys), so only its size is bounded
        return self.is_prior

    def describe(self) -> str:
        """How ``model_index.json`` names such a component."""
        if self.is_prior:
            return f'["{LIBRARY}", <a registered pixelprior prior class>]'
        return f'["{self.library}", "{self.base.__name__}"]'


def read_json_object(path: str, what: str) -> dict[str, Any]:
    """Read a small JSON object from ``path``; ``ValueError`` naming ``what`` and the path for anything else."""
    if not os.path.isfile(path):
        raise ValueError(f"Expected {what} at {path}, got no such file.")
    size = os.path.getsize(path)
    if size > MAX_JSON_BYTES:
        raise ValueError(f"Expected {what} ({path}) of at most {MAX_JSON_BYTES} bytes, got {size} bytes.")
    try:
        with open(path, "rb") as f:
            value = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"Expected {what} ({path}) to be a JSON object, got unreadable JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"Expected {what} ({path}) to be a JSON object, got a JSON {type(value).__name__}.")
    return value


def read_model_index(folder: str) -> dict[str, Any]:
    """The ``model_index.json`` of a pipeline folder, as a dict (checked to be one)."""
    return read_json_object(os.path.join(folder, INDEX_NAME), f"a pipeline folder's {INDEX_NAME}")


def check_pipeline_index(
    pipeline_name: str, components: dict[str, Component], index: dict[str, Any], source: str
) -> dict[str, type]:
    """Check a ``model_index.json`` against the pipeline class ``pipeline_name`` taking ``components``.

    Args:
        pipeline_name: the class name ``_class_name`` must be.
        components: the components that class takes, by name.
        index: the parsed ``model_index.json``.
        source: where ``index`` came from, for the messages.

    Returns:
        The class of each component present, by component name (an absent optional one is left out).
    """
    class_name = index.get("_class_name")
    if class_name != pipeline_name:
        raise ValueError(f"Expected _class_name {pipeline_name!r} in {source}, got {class_name!r}.")
    unexpected = sorted(key for key in index if not key.startswith("_") and key not in components)
    if unexpected:
        raise ValueError(
            f"Expected only the components {sorted(components)} of {pipeline_name} in {source}, got also {unexpected}."
        )
    classes = {}
    for name, component in components.items():
        entry = index.get(name)
        if component.optional and (entry is None or entry in ([None, None], (None, None))):
            continue
        cls = None
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] == component.library:
            cls = component.resolve(entry[1])
        if cls is None:
            raise ValueError(
                f"Expected the component {name!r} of {pipeline_name} to be {component.describe()} in {source}, "
                f"got {entry!r}."
            )
        classes[name] = cls
    return classes


def weights_file(path: str, name: str, *, variant: str | None = None, use_safetensors: bool | None = None) -> str:
    """The weights file of the component folder ``path`` that diffusers' ``from_pretrained`` will read.

    As diffusers: ``use_safetensors=None`` reads safetensors, else a ``.bin`` (with ``weights_only=True``); ``True``
    only safetensors; ``False`` only a ``.bin``.
    """
    names = {None: [SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME], True: [SAFETENSORS_WEIGHTS_NAME], False: [WEIGHTS_NAME]}
    if use_safetensors not in names:
        raise ValueError(f"Expected use_safetensors None, True or False, got {use_safetensors!r}.")
    names = names[use_safetensors]
    if variant is not None:
        names = [f"{stem}.{variant}.{ext}" for stem, ext in (n.rsplit(".", 1) for n in names)]
    for file_name in names:
        if os.path.isfile(os.path.join(path, file_name)):
            return os.path.join(path, file_name)
    raise ValueError(f"Expected the weights of component {name!r} in {path} as one of {names}, got none.")


def weight_shapes(file: str, name: str) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a weights file holds, read without reading the tensors' data.

    safetensors: the header. ``.bin``: ``torch.load(weights_only=True, map_location="meta")``, which builds plain
    tensors only (any other object is refused) and allocates nothing.
    """
    try:
        if file.endswith(".safetensors"):
            with safetensors.safe_open(file, framework="pt") as f:
                return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
        state = torch.load(file, map_location="meta", weights_only=True)
    except Exception as error:  # a bad file fails in many library-specific ways: name it
        raise ValueError(f"Expected a weights file for component {name!r}, got unreadable {file}: {error}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"Expected a state dict of tensors for component {name!r} in {file}, got other objects.")
    return {key: tuple(value.shape) for key, value in state.items()}


class _BudgetExceeded(Exception):
    pass


class _Budget(TorchDispatchMode):
    """Count the elements of every tensor the dispatcher produces and the operations; raise past the limits."""

    def __init__(self, max_elements: int, max_ops: int) -> None:
        super().__init__()
        self.max_elements, self.max_ops = max_elements, max_ops
        self.elements = self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops += 1
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.elements += t.numel()
        if self.elements > self.max_elements or self.ops > self.max_ops:
            raise _BudgetExceeded()
        return out


def _meta_state_shapes(cls: type, config: dict[str, Any], name: str, file: str, weights: dict) -> dict:
    """Build ``cls`` from ``config`` on the meta device under a budget; the shapes of its state dict."""
    num_weights = sum(math.prod(shape) for shape in weights.values())
    budget = _Budget(
        BUDGET_ELEMENTS_PER_WEIGHT * num_weights + BUDGET_ELEMENTS_FLOOR,
        BUDGET_OPS_PER_TENSOR * len(weights) + BUDGET_OPS_FLOOR,
    )
    try:
        with torch.device("meta"), budget:
            model = cls.from_config(config)
    except _BudgetExceeded:
        raise ValueError(
            f"Expected the config of component {name!r} to describe the network in {file} ({num_weights} values), "
            f"got one that builds more than {budget.max_elements} values or {budget.max_ops} operations."
        ) from None
    except Exception as error:  # a constructor rejects bad values in its own ways: name the file
        raise ValueError(f"Expected a valid config for component {name!r} ({cls.__name__}), got: {error}") from None
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _check_state_dict(expected: dict, weights: dict, name: str, file: str) -> None:
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    wrong = sorted(key for key in set(expected) & set(weights) if expected[key] != weights[key])
    if missing or unexpected or wrong:
        details = [f"{label} {keys[:5]}" for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        details += [f"{key} of shape {weights[key]} instead of {expected[key]}" for key in wrong[:5]]
        raise ValueError(
            f"Expected the weights in {file} to match the config of component {name!r}, got {'; '.join(details)}."
        )


def check_component_folder(
    folder: str, name: str, cls: type, component: Component, *, variant: str | None, use_safetensors: bool | None
) -> str:
    """Check the component folder ``folder/name`` before ``cls.from_pretrained`` reads it (see the module).

    Returns:
        The weights file ``from_pretrained`` is to read.
    """
    path = os.path.join(folder, name)
    if not os.path.isdir(path):
        raise ValueError(f"Expected a folder for component {name!r} at {path}, got no such folder.")
    config = read_json_object(os.path.join(path, CONFIG_NAME), f"the {CONFIG_NAME} of component {name!r}")
    if config.get("_class_name") != cls.__name__:
        raise ValueError(
            f"Expected _class_name {cls.__name__!r} in {os.path.join(path, CONFIG_NAME)} (as {INDEX_NAME} says), "
            f"got {config.get('_class_name')!r}."
        )
    if component.exact_state_dict:
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(key for key in config if not key.startswith("_") and key not in accepted)
        if unknown:
            raise ValueError(
                f"Expected arguments of {cls.__name__} in the {CONFIG_NAME} of component {name!r}, got unknown "
                f"{unknown}."
            )
    file = weights_file(path, name, variant=variant, use_safetensors=use_safetensors)
    weights = weight_shapes(file, name)
    expected = _meta_state_shapes(cls, config, name, file, weights)
    if component.exact_state_dict:
        _check_state_dict(expected, weights, name, file)
    return file
