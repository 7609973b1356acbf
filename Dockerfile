# The jaxbridge sidecar: Python + pinned JAX serving the wire protocol over
# TCP with CURVE. Works with the legacy builder (no BuildKit features).
#
#   docker build -t jaxbridge-sidecar .                           # CPU, python:3.13-slim
#   docker build --build-arg ACCEL=cuda12 -t jaxbridge-sidecar:cuda .   # NVIDIA GPUs
#   docker build --build-arg BASE=local/python3.13 -t jaxbridge-sidecar .  # no registry: see docker/README.md
#
# BASE must have python3 with venv/ensurepip (the official python images do;
# on Debian, python3-venv). Wheels in docker/wheelhouse/ (scripts/docker-wheelhouse.sh)
# make the build work without network; without them pip uses PyPI.
#
# ACCEL=cpu installs the CPU jaxlib from python/requirements.lock. ACCEL=cuda12
# adds JAX's CUDA 12 wheels (jax[cuda12] at the pinned JAX version: the CUDA
# and cuDNN libraries come as pip wheels, so the base stays a plain Python
# image); the host needs an NVIDIA driver and the NVIDIA Container Toolkit, and
# the container GPU access (`docker run --gpus all`, or docker/compose.gpu.yml).
ARG BASE=python:3.13-slim

FROM ${BASE} AS build
ARG ACCEL=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/jaxbridge
COPY python/requirements.lock /src/requirements.lock
COPY docker/wheelhouse/ /wheels/
# Dependencies first, in their own layer: they change only with the lock.
RUN set -eu; \
    pip=/opt/jaxbridge/bin/pip; \
    if ls /wheels/*.whl >/dev/null 2>&1; then from="--no-index --find-links /wheels"; else from=""; echo "jaxbridge: no wheelhouse, installing from PyPI"; fi; \
    case "$ACCEL" in cpu|cuda12) ;; *) echo "ACCEL must be cpu or cuda12, not $ACCEL" >&2; exit 2;; esac; \
    $pip install $from -r /src/requirements.lock; \
    if [ "$ACCEL" = cuda12 ]; then \
      jaxv="$(/opt/jaxbridge/bin/python -c 'import importlib.metadata as m; print(m.version("jax"))')"; \
      $pip install $from -c /src/requirements.lock "jax[cuda12]==$jaxv"; \
    fi; \
    /opt/jaxbridge/bin/python -c 'import jax, zmq; assert zmq.has("curve"), "libzmq without CURVE"; print("jaxbridge: jax", jax.__version__, "libzmq", zmq.zmq_version())'
COPY python/ /src/python/
RUN set -eu; \
    if ls /wheels/*.whl >/dev/null 2>&1; then from="--no-index --find-links /wheels"; else from=""; fi; \
    /opt/jaxbridge/bin/pip wheel --no-deps $from -w /dist /src/python

FROM ${BASE}
ARG ACCEL=cpu
LABEL org.opencontainers.image.title="jaxbridge-sidecar" \
      org.opencontainers.image.description="The Python JAX sidecar that jaxbridge's TypeScript client drives over ZeroMQ (TCP + CURVE)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      dev.jaxbridge.accel="${ACCEL}"
ENV PATH=/opt/jaxbridge/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    JAXBRIDGE_PORT=5555 JAXBRIDGE_KEYS=/keys JAXBRIDGE_RUN=/tmp/jaxbridge
RUN useradd --uid 10001 --user-group --home-dir /home/jaxbridge --create-home --shell /usr/sbin/nologin jaxbridge \
 && mkdir -p /keys && chown jaxbridge:jaxbridge /keys && chmod 0700 /keys
COPY --from=build /opt/jaxbridge /opt/jaxbridge
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-deps --no-index /tmp/dist/*.whl && rm -rf /tmp/dist
COPY docker/entrypoint.sh docker/healthcheck.py /usr/local/lib/jaxbridge/
USER jaxbridge
WORKDIR /home/jaxbridge
EXPOSE 5555
# The protocol handshake (hello with the sample, echo checked bit for bit),
# over CURVE with a key pair the entrypoint made for it at start.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "/usr/local/lib/jaxbridge/healthcheck.py"]
ENTRYPOINT ["/bin/sh", "/usr/local/lib/jaxbridge/entrypoint.sh"]
CMD ["serve"]
