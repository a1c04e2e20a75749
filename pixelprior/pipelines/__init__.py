"""Thin diffusers pipelines: they only sample.

Import order (no circles): ``library`` (diffusers registration) <- ``folder`` (checks) <- ``hub`` <- ``loading``
(``from_pretrained``, ``load_pipeline``) <- ``base`` (the shared pipeline class) <- the two pipeline files, which
register themselves for ``load_pipeline`` and ``DiffusionPipeline.from_pretrained``.
"""

from .hub import save_model_card
from .image_grid import make_image_grid
from .loading import load_pipeline
from .pipeline_pixel_prior import PixelPriorPipeline
from .pipeline_vq_prior import VQPriorPipeline

__all__ = ["PixelPriorPipeline", "VQPriorPipeline", "load_pipeline", "make_image_grid", "save_model_card"]
