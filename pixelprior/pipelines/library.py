"""Make diffusers know ``pixelprior`` as a library of loadable pipeline components.

diffusers saves and loads pipeline components through ``LOADABLE_CLASSES``: a map from library name (``diffusers``,
``transformers``, ...) to the base classes whose ``save_pretrained`` / ``from_pretrained`` it calls. For a library
it does not know, ``model_index.json`` would record the private defining module (``pixelprior.models.pixelcnn``)
and loading would fail to find a load method. Registering ``pixelprior`` with its base class
:class:`~pixelprior.AutoregressivePrior` makes saved entries read ``["pixelprior", "PixelCNN"]`` (DESIGN.md
section 5) and lets diffusers load them by importing ``pixelprior`` and reading the class from its top level.
"""

from __future__ import annotations

from diffusers.pipelines import pipeline_loading_utils

LIBRARY = "pixelprior"
# base class exported by pixelprior -> [save method, load method], the layout of diffusers' LOADABLE_CLASSES
# (ColorPalette: the optional palette component of PixelPriorPipeline, a safetensors file of colours.)
LOADABLE = {
    "AutoregressivePrior": ["save_pretrained", "from_pretrained"],
    "ColorPalette": ["save_pretrained", "from_pretrained"],
}


def register_with_diffusers() -> None:
    """Add ``pixelprior`` to diffusers' loadable libraries (idempotent; called when pixelprior.pipelines loads)."""
    pipeline_loading_utils.LOADABLE_CLASSES.setdefault(LIBRARY, dict(LOADABLE))
    # ALL_IMPORTABLE_CLASSES is the flat union diffusers consults at load time; it is the same dict object
    # that pipeline_utils imported, so updating it in place is seen there too.
    for base_class, methods in LOADABLE.items():
        pipeline_loading_utils.ALL_IMPORTABLE_CLASSES.setdefault(base_class, list(methods))
