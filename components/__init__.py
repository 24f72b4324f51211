"""KFP components, one module per stage. Each is a thin wrapper over a `labelloop.stages` step.

Every component runs in the project image (`IMAGE`), which has labelloop and all its
dependencies installed: no `packages_to_install`, no runtime `pip install kfp`.
"""

from labelloop import __version__

IMAGE_REPOSITORY = "labelloop"
# A placeholder tied to the package version (what `docker build -t labelloop:<version> .` makes):
# submit / schedule / upload replace it with the digest `make image` pushed, and
# `pipelines compile --image` pins any other (compiled/image.json says so).
IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
