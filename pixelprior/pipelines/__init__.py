"""Thin diffusers pipelines: they only sample."""

from .image_grid import make_image_grid
from .pipeline_pixel_prior import PixelPriorPipeline

__all__ = ["PixelPriorPipeline", "make_image_grid"]
