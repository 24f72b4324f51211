# The project image every component runs in (`components.IMAGE`): labelloop and all its
# dependencies, so no step installs anything at run time (`install_kfp_package=False`).
# Build and push it with `make image` (Cloud Build, cloudbuild.yaml): runs use its digest.
#
# Reproducible: the base is pinned by digest, and the dependencies are the exact versions and
# hashes of requirements/image.lock (`make lock` refreshes it from pyproject.toml's ranges), so
# two builds of one commit install the same files. CI refreshes the base digest:
# `docker buildx imagetools inspect python:3.11-slim --format '{{json .Manifest.Digest}}'`
# (or Dependabot's docker ecosystem); a build may pass `--build-arg PYTHON_IMAGE=...@sha256:...`.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first (their layer is reused while only src/ changes): every file is checked
# against the lock's hashes, nothing outside the lock is resolved (--no-deps).
# The build tools come first, from their own hashed lock, so that the one sdist in the lock
# (kfp-server-api) builds with them (--no-build-isolation) instead of with whatever an isolated
# build environment would download.
COPY requirements/build.lock requirements/image.lock requirements/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/build.lock \
    && /opt/venv/bin/pip install --require-hashes --no-deps --no-build-isolation -r requirements/image.lock
# labelloop itself, with the locked setuptools (no isolated build env fetching other versions);
# `pip check` fails the build when the lock does not satisfy pyproject.toml's ranges.
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation --no-index . \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -c "import labelloop, kfp, google_cloud_pipeline_components; print(labelloop.__version__)"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.source="https://github.com/labelloop/labelloop" \
      org.opencontainers.image.description="labelloop pipeline components"
COPY --from=build /opt/venv /opt/venv
# `python3` on PATH is the venv's: the KFP executor runs `python3 -m kfp.dsl.executor_main`.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/labelloop \
    MPLCONFIGDIR=/home/labelloop/.cache/matplotlib
# A non-root user (uid 10001, group 0 so that platforms running an arbitrary uid in the root
# group, e.g. OpenShift, can write too). The KFP launcher on Kubeflow Pipelines copies
# artifacts to local mount points named after the store (/minio, /s3, /gcs; kubeflow/pipelines
# #5673, #10397): they exist here, writable by that user. On Vertex AI, /gcs is the Cloud
# Storage FUSE mount and shadows the empty folder.
RUN groupadd --gid 10001 labelloop \
    && useradd --uid 10001 --gid 10001 --groups 0 --create-home --shell /usr/sbin/nologin labelloop \
    && mkdir -p /minio /s3 /gcs /home/labelloop/.cache \
    && chown -R 10001:0 /minio /s3 /gcs /home/labelloop \
    && chmod -R g=u /minio /s3 /gcs /home/labelloop
USER 10001:10001
WORKDIR /home/labelloop
# Built once here instead of in every task: matplotlib's font cache (the report).
RUN python3 -c "import matplotlib.font_manager as fm; print(len(fm.fontManager.ttflist), 'fonts cached')" \
    && chmod -R g=u /home/labelloop/.cache
CMD ["python3", "-c", "import labelloop; print(labelloop.__version__)"]
