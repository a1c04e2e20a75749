"""Loading pipeline folders: ``<Pipeline>.from_pretrained`` and :func:`load_pipeline`.

``PixelPriorPipeline.from_pretrained(path)`` (and ``VQPriorPipeline``'s) does not hand the folder to diffusers'
generic loader, which would import any library the folder names and run a custom pipeline's ``.py`` file.
Instead it

1. turns ``path`` into a local folder (:func:`~pixelprior.pipelines.hub.resolve_pretrained_path`: a folder, or a
   Hub snapshot of ``*.json``, ``*.safetensors``, ``*.md`` files), or says that there is no such folder;
2. checks ``model_index.json`` and every component folder (:mod:`pixelprior.pipelines.folder`): the pipeline
   class, only pixelprior priors and diffusers ``VQModel``s, configs that match their weights;
3. loads each component with its class's own ``from_pretrained`` (safetensors; a ``.bin`` only through
   ``torch.load(weights_only=True)``) and builds the pipeline.

A folder of the other pipeline class is refused with a ``ValueError`` that says which class to load it with
(:func:`load_pipeline` and ``DiffusionPipeline.from_pretrained`` pick the class from ``model_index.json``).

``DiffusionPipeline.from_pretrained(path)`` (after ``import pixelprior``; see :mod:`pixelprior.pipelines.library`) is
diffusers' loader: it resolves the class the folder names and calls :meth:`PipelineLoadingMixin.extract_init_dict`
on it before it loads any component, which applies step 2's ``model_index.json`` checks (pipeline class, component
libraries and classes); the component files are then read by diffusers and the prior classes' ``from_pretrained``.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from .folder import INDEX_NAME, Component, check_component_folder, check_pipeline_index, read_model_index
from .hub import DOWNLOAD_KWARGS, resolve_pretrained_path
from .library import PIPELINES

# keyword arguments of from_pretrained that reach each component's from_pretrained
LOAD_KWARGS = ("dtype", "torch_dtype", "variant", "use_safetensors", "low_cpu_mem_usage", "disable_mmap")
# diffusers' ways to run code from a folder or a repository: never taken
CODE_KWARGS = ("custom_pipeline", "custom_revision", "trust_remote_code")


def _load_component(folder: str, name: str, cls: type, component: Component, **load: Any) -> Any:
    """Check and load the component ``folder/name`` of class ``cls``."""
    if not component.is_model:  # a data component (the palette): its class reads and checks its one safetensors file
        return cls.from_pretrained(os.path.join(folder, name))
    file = check_component_folder(
        folder, name, cls, component, variant=load.get("variant"), use_safetensors=load.get("use_safetensors")
    )
    load["use_safetensors"] = file.endswith(".safetensors")  # read the file that was checked, nothing else
    dtype, old_name = load.pop("dtype", None), load.pop("torch_dtype", None)  # diffusers' new and old names
    if dtype is not None and old_name is not None:
        raise ValueError(f"Expected one of dtype and torch_dtype, got both ({dtype!r} and {old_name!r}).")
    dtype = old_name if dtype is None else dtype
    if isinstance(dtype, dict):  # diffusers' per-component form: {"prior": torch.float64, "default": ...}
        dtype = dtype.get(name, dtype.get("default"))
    if dtype is not None:
        load["dtype"] = dtype
    path = os.path.join(folder, name)
    try:
        return cls.from_pretrained(path, **load)
    except Exception as error:  # checked above; what is left is a corrupt file, failing in library-specific ways
        raise ValueError(f"Could not load component {name!r} ({cls.__name__}) from {path}: {error}") from error


class PipelineLoadingMixin:
    """``from_pretrained`` that checks a pipeline folder before loading it (see the module).

    Mixed into the pipelines before ``DiffusionPipeline``; ``components`` names what each pipeline takes.
    """

    components: ClassVar[dict[str, Component]] = {}

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> PipelineLoadingMixin:
        """Load a pipeline from a folder written by ``save_pretrained`` or from a Hub repository id.

        Args:
            pretrained_model_name_or_path: a local folder, or ``"user/repo"`` on the Hub (downloaded with
                :func:`huggingface_hub.snapshot_download` into the Hugging Face cache).
            kwargs: ``cache_dir``, ``revision``, ``token``, ``local_files_only``, ``force_download`` reach the
                download; ``dtype`` (or its old name ``torch_dtype``: one dtype, or a dict by component name with a
                ``"default"``), ``variant``, ``use_safetensors`` (``None``: safetensors, else a ``.bin`` read with
                ``weights_only=True``; ``False`` also downloads ``.bin`` files from the Hub), ``low_cpu_mem_usage``
                and ``disable_mmap`` reach each component's ``from_pretrained``; a component passed by name
                (``prior=...``) is used instead of the folder's.

        Raises:
            ValueError: for a missing folder or repository, a folder of another pipeline class, any component that
                is not what the pipeline takes, a config that does not match its weights, or an unknown argument.
        """
        passed = {name: kwargs.pop(name) for name in list(kwargs) if name in cls.components}
        code = sorted(key for key in kwargs if key in CODE_KWARGS)
        if code:
            raise ValueError(f"Expected no {code}: pixelprior pipelines run no code from a folder or repository.")
        download = {key: kwargs.pop(key) for key in DOWNLOAD_KWARGS if key in kwargs}
        load = {key: kwargs.pop(key) for key in LOAD_KWARGS if key in kwargs}
        if kwargs:
            accepted = sorted(DOWNLOAD_KWARGS + LOAD_KWARGS + tuple(cls.components))
            raise ValueError(f"Expected keyword arguments among {accepted}, got unknown {sorted(kwargs)}.")
        allow_pickle = load.get("use_safetensors") is False
        folder = resolve_pretrained_path(pretrained_model_name_or_path, allow_pickle=allow_pickle, **download)
        index = read_model_index(folder)
        named = index.get("_class_name")
        if isinstance(named, str) and named != cls.__name__ and named in PIPELINES:
            raise ValueError(
                f"Expected a {cls.__name__} folder, got a {named} folder ({folder}): load it with "
                f"{named}.from_pretrained, pixelprior.pipelines.load_pipeline or DiffusionPipeline.from_pretrained."
            )
        classes = check_pipeline_index(cls.__name__, cls.components, index, os.path.join(folder, INDEX_NAME))
        modules = {
            name: passed[name] if name in passed else _load_component(folder, name, c, cls.components[name], **load)
            for name, c in classes.items()
        }
        pipeline = cls(**modules)
        pipeline.register_to_config(_name_or_path=os.fspath(pretrained_model_name_or_path))
        return pipeline

    @classmethod
    def extract_init_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> tuple:
        """diffusers' hook: ``DiffusionPipeline.from_pretrained`` calls it before loading any component.

        Checks ``model_index.json``'s pipeline class and components, then does what ``ConfigMixin`` does.
        """
        check_pipeline_index(cls.__name__, cls.components, config_dict, INDEX_NAME)
        return super().extract_init_dict(config_dict, **kwargs)


def load_pipeline(pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> PipelineLoadingMixin:
    """Load a saved pixelprior pipeline of whichever class its ``model_index.json`` names.

    Args:
        pretrained_model_name_or_path: a folder written by ``save_pretrained`` (or ``pixelprior train``), or a Hub id.
        kwargs: as for ``from_pretrained``.

    Returns:
        A :class:`~pixelprior.PixelPriorPipeline` or :class:`~pixelprior.VQPriorPipeline`.
    """
    download = {key: kwargs.pop(key) for key in DOWNLOAD_KWARGS if key in kwargs}
    allow_pickle = kwargs.get("use_safetensors") is False
    folder = resolve_pretrained_path(pretrained_model_name_or_path, allow_pickle=allow_pickle, **download)
    name = read_model_index(folder).get("_class_name")
    if not isinstance(name, str) or name not in PIPELINES:
        raise ValueError(
            f"Expected _class_name one of {sorted(PIPELINES)} in {os.path.join(folder, INDEX_NAME)}, got {name!r}."
        )
    pipeline = PIPELINES[name].from_pretrained(folder, **kwargs)
    pipeline.register_to_config(_name_or_path=os.fspath(pretrained_model_name_or_path))
    return pipeline
