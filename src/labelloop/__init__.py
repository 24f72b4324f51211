"""labelloop: training labels and a model from raw images and text, with little human labeling."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("labelloop")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
