# syntax=docker/dockerfile:1
# The worker image: `docker build -t stream-logger .`, then `docker run stream-logger` runs `stream-logger consume`
# with the CMD below; settings come from the environment (STREAM_LOGGER_BOOTSTRAP_SERVERS, STREAM_LOGGER_DSN, see
# the README's configuration reference). Any other command: `docker run stream-logger datamart setup --schema ...`.
# Checked without a Docker engine by tests/unit/test_deploy_containers.py (see the README's "Containers").

FROM python:3.11-slim AS build
WORKDIR /src
# Only what the wheel is built from (pyproject's readme is README.md): the tests and examples stay out.
COPY pyproject.toml README.md ./
COPY stream_logger ./stream_logger
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels stream-logger
# A fixed, non-root UID (Kubernetes' runAsNonRoot checks the number); no home, no shell login, nothing writable.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin stream-logger
USER 10001:10001
EXPOSE 9464
# /healthz is liveness; compose uses this, Kubernetes ignores it and uses the Deployment's probes.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]
ENTRYPOINT ["stream-logger"]
CMD ["--log-format", "json", "consume", "--topic", "scoring", "--schema", "datamart", "--metrics-port", "9464"]
