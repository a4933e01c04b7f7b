# syntax=docker/dockerfile:1
#
# ringpool container image: one image, four processes.
#
#   docker build -t ringpool/ringpool:0.2.0 .
#   docker run --rm ringpool/ringpool:0.2.0 ringpool-node --help
#   docker run --rm ringpool/ringpool:0.2.0 ringpool-coordinator --help
#   docker run --rm ringpool/ringpool:0.2.0 taskctl --help
#   docker run --rm ringpool/ringpool:0.2.0 ringpool-dashboard --help
#
# Every flag also reads RINGPOOL_<FLAG> from the environment, which is how the
# Kubernetes manifests in k8s/ configure the processes.
#
# Your own tasks: build FROM this image and add your modules, e.g.
#
#   FROM ringpool/ringpool:0.2.0
#   USER root
#   RUN pip install --no-cache-dir -r /app/requirements-mytasks.txt   # optional
#   USER 10001:10001
#   COPY --chown=10001:10001 mytasks/ /app/mytasks/
#   # then run with --tasks mytasks (or RINGPOOL_TASKS=mytasks)
#
# The base image is pinned by tag. For reproducible production builds pin it by
# digest as well (python:3.11.13-slim-bookworm@sha256:...).

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---------------------------------------------------------------- builder ----
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# The three packages of the workspace: client (with its CLI and dashboard), node, coordinator.
COPY sdk/ sdk/
COPY node/ node/
COPY coordinator/ coordinator/

# Build the three wheels, then install them with their pinned dependencies into a
# self-contained virtualenv that the final stage copies as a whole. Every
# dependency ships binary wheels, so the builder needs no compiler either;
# --only-binary makes a missing wheel fail here rather than compile silently.
RUN python -m pip wheel --no-deps --wheel-dir /wheels ./sdk ./node ./coordinator \
 && python -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --only-binary=:all: --find-links /wheels \
      "ringpool[cli,dashboard]" ringpool-node ringpool-coordinator \
 && test -x /opt/venv/bin/ringpool-node \
 && test -x /opt/venv/bin/ringpool-coordinator \
 && test -x /opt/venv/bin/taskctl \
 && test -x /opt/venv/bin/ringpool-dashboard

# ------------------------------------------------------------------ final ----
FROM ${PYTHON_IMAGE} AS final

LABEL org.opencontainers.image.title="ringpool" \
      org.opencontainers.image.description="Distributed task cluster for Python with consistent-hash routing" \
      org.opencontainers.image.licenses="Apache-2.0"

# tini is PID 1: it forwards SIGTERM to the process (the node drains on it) and
# reaps the children of the cpu process pool. No compiler, no build tools.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ringpool \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin ringpool

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric uid so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# gRPC (node), node metrics, coordinator metrics, the web dashboard.
EXPOSE 7700 9400 9401 7780

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["ringpool-node"]
