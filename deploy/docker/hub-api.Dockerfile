# hub-api: `python -m letsbe_hub` on port 3847. Build from the repository root (the uv workspace):
#   docker build -f deploy/docker/hub-api.Dockerfile -t code.letsbe.solutions/letsbe/hub-api:VERSION .
# (or `docker compose build` in deploy/hub). Needs BuildKit (Docker 23+). Base image pinning: deploy/README.md.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs ./libs
COPY services ./services
# Exactly the locked versions, only this service and what it imports. Workspace packages stay editable so
# their migrations/ folders (found next to src/ by letsbe-migrate) and templates ship as they are in the repo.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package letsbe-hub --python /usr/local/bin/python3

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 1001 letsbe \
 && useradd --system --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin letsbe
WORKDIR /app
# Owned by root: the service cannot change its own code.
COPY --from=builder /app/.venv /app/.venv
COPY --from=builder /app/libs /app/libs
COPY --from=builder /app/services/hub-api /app/services/hub-api
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    LETSBE_HUB_HOST=0.0.0.0 LETSBE_HUB_PORT=3847
USER 1001:1001
EXPOSE 3847
# No curl in slim images: Python asks /healthz (the process is up; /readyz, deps reachable, is the compose check).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['LETSBE_HUB_PORT'] + '/healthz', timeout=4)"]
CMD ["python", "-m", "letsbe_hub"]
