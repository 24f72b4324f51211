"""labelloop: training labels and a model from raw images and text, with little human labeling."""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # Looked up on first use: reading the installed metadata is a tenth of a second of every
    # command's start-up otherwise.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import metadata

    try:
        version = metadata.version("labelloop")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        version = "0.0.0"
    globals()["__version__"] = version
    return version
