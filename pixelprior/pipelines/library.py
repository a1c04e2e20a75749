"""Make diffusers know ``pixelprior``: its component library and its pipeline classes.

Two lookups in diffusers' loading code (``diffusers/pipelines/pipeline_loading_utils.py``) decide whether a
pixelprior folder loads:

* **Components** are saved and loaded through ``LOADABLE_CLASSES``: a map from library name (``diffusers``,
  ``transformers``, ...) to the base classes whose ``save_pretrained`` / ``from_pretrained`` it calls. For a
  library it does not know, ``model_index.json`` would record the private defining module
  (``pixelprior.models.pixelcnn``), loading would find no load method, and ``DiffusionPipeline.download`` would
  refuse a Hub repository (``_get_custom_components_and_folders``). Registering ``pixelprior`` with its base
  class :class:`~pixelprior.AutoregressivePrior` makes saved entries read ``["pixelprior", "PixelCNN"]``
  (DESIGN.md section 5) and lets diffusers load them by importing ``pixelprior`` and reading the class from its
  top level.
* **The pipeline class** of ``DiffusionPipeline.from_pretrained(path)`` is found by ``_get_pipeline_class``:
  ``getattr(diffusers, model_index["_class_name"])``, a plain attribute lookup on the ``diffusers`` module (its
  only other route is a *custom pipeline*, code loaded from a ``.py`` file, which pixelprior never asks for). So
  :func:`register_pipeline` sets ``diffusers.PixelPriorPipeline`` (and ``VQPriorPipeline``) to the class: one new
  module attribute, no diffusers function replaced. After ``import pixelprior``,
  ``DiffusionPipeline.from_pretrained`` returns the pipeline class the folder names, and the Hub download
  (``DiffusionPipeline.download``) resolves it the same way.
"""

from __future__ import annotations

import logging

import diffusers
from diffusers.pipelines import pipeline_loading_utils

LIBRARY = "pixelprior"
# base class exported by pixelprior -> [save method, load method], the layout of diffusers' LOADABLE_CLASSES
# (ColorPalette: the optional palette component of PixelPriorPipeline, a safetensors file of colours.)
LOADABLE = {
    "AutoregressivePrior": ["save_pretrained", "from_pretrained"],
    "ColorPalette": ["save_pretrained", "from_pretrained"],
}
# the pipeline classes pixelprior defines, by the name model_index.json records (filled by register_pipeline)
PIPELINES: dict[str, type] = {}

logger = logging.getLogger(__name__)


def register_with_diffusers() -> None:
    """Add ``pixelprior`` to diffusers' loadable libraries (idempotent; called when pixelprior.pipelines loads)."""
    pipeline_loading_utils.LOADABLE_CLASSES.setdefault(LIBRARY, dict(LOADABLE))
    # ALL_IMPORTABLE_CLASSES is the flat union diffusers consults at load time; it is the same dict object
    # that pipeline_utils imported, so updating it in place is seen there too.
    for base_class, methods in LOADABLE.items():
        pipeline_loading_utils.ALL_IMPORTABLE_CLASSES.setdefault(base_class, list(methods))


def register_pipeline(cls: type) -> type:
    """Make ``cls`` what ``DiffusionPipeline.from_pretrained`` picks for folders whose ``_class_name`` is its name.

    Also registers it for :func:`pixelprior.pipelines.load_pipeline`. A name diffusers itself defines is never
    shadowed (its own class keeps loading its own folders; a warning says so).
    """
    register_with_diffusers()
    name = cls.__name__
    PIPELINES[name] = cls
    existing = getattr(diffusers, name, None)  # the lazy module raises AttributeError (-> None) for unknown names
    if existing is None:
        setattr(diffusers, name, cls)
    elif existing is not cls:
        logger.warning(f"diffusers defines its own {name}: DiffusionPipeline.from_pretrained loads that one.")
    return cls
