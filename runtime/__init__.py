"""The torch-free runtime: image IO, inference backends and the `Stylizer` API."""

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import load_image, save_image
from stylecast.runtime.stylizer import Stylizer

__all__ = ["StylecastError", "Stylizer", "load_image", "save_image"]
