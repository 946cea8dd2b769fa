"""The torch-free runtime: image IO, inference backends and the `Stylizer` API."""

from .errors import StylecastError
from .images import load_image, save_image
from .stylizer import Stylizer

__all__ = ["StylecastError", "Stylizer", "load_image", "save_image"]
