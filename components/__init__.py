"""KFP components, one module per stage. Each is a thin wrapper over a `labelloop.stages` step.

Every component runs in the project image (`IMAGE`), which has labelloop and all its
dependencies installed: no `packages_to_install`, no runtime `pip install kfp`.
"""

from labelloop import __version__

IMAGE_REPOSITORY = "ghcr.io/labelloop/labelloop"
# Tied to the package version; `pipelines compile --image` rewrites it (CI passes the digest).
IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
