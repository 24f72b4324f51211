# The project image every component runs in (`components.IMAGE`): labelloop and all its
# dependencies, so no step installs anything at run time (`install_kfp_package=False`).
#
# Base: python:3.11-slim pinned by digest, so a rebuild of the same commit gets the same base.
# This digest is the one pinned in independent public Dockerfiles (Docker Hub and its ECR
# mirror of the official images serve the same manifest); it could not be re-resolved from the
# build machine (no registry access there). CI refreshes it: `docker buildx imagetools inspect
# python:3.11-slim --format '{{json .Manifest.Digest}}'` (or Dependabot's docker ecosystem),
# and a build may pass `--build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest>`.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies live in pyproject.toml only; the image installs exactly that (no dev extras).
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install . \
    && /opt/venv/bin/python -c "import labelloop, kfp, google_cloud_pipeline_components; print(labelloop.__version__)"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.source="https://github.com/labelloop/labelloop" \
      org.opencontainers.image.description="labelloop pipeline components"
COPY --from=build /opt/venv /opt/venv
# `python3` on PATH is the venv's: the KFP executor runs `python3 -m kfp.dsl.executor_main`.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --gid 10001 labelloop \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin labelloop
USER 10001:10001
WORKDIR /home/labelloop
# Selection from prediction files uses numba-compiled code: give it a writable cache and compile it
# once here, so a task does not spend 5-8 s compiling (a machine with another CPU model than the
# build's recompiles once into the same cache).
ENV NUMBA_CACHE_DIR=/home/labelloop/.cache/numba
RUN python3 -c "from labelloop.active_learning.predictions import warm_up; print(warm_up())"
CMD ["python3", "-c", "import labelloop; print(labelloop.__version__)"]
