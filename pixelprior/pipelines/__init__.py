"""Thin diffusers pipelines: they only sample."""

from .hub import load_pipeline, save_model_card
from .image_grid import make_image_grid
from .pipeline_pixel_prior import PixelPriorPipeline
from .pipeline_vq_prior import VQPriorPipeline

__all__ = ["PixelPriorPipeline", "VQPriorPipeline", "load_pipeline", "make_image_grid", "save_model_card"]
