# safety-wrapper: `python -m letsbe_safety_wrapper` on port 8200. Build from the repository root (the uv workspace):
#   docker build -f deploy/docker/safety-wrapper.Dockerfile -t code.letsbe.solutions/letsbe/safety-wrapper:VERSION .
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
    uv sync --frozen --no-dev --package letsbe-safety-wrapper --python /usr/local/bin/python3
# The workspace's own code compiled too (uv compiles site-packages only): with PYTHONDONTWRITEBYTECODE the agent
# would otherwise compile it in memory at every start, under its memory limit.
RUN /usr/local/bin/python3 -m compileall -q libs/agent/src libs/contracts/src libs/platform/src services/safety-wrapper/src

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 1001 letsbe \
 && useradd --system --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin letsbe
WORKDIR /app
# Owned by root: the service cannot change its own code.
COPY --from=builder /app/.venv /app/.venv
COPY --from=builder /app/libs /app/libs
COPY --from=builder /app/services/safety-wrapper /app/services/safety-wrapper
# SSL_CERT_DIR: the system's CA directory, read per certificate as needed, instead of httpx loading the whole
# bundle into every agent's memory (1.5 MB of a 64 MB limit).
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 SSL_CERT_DIR=/etc/ssl/certs \
    LETSBE_SW_HOST=0.0.0.0 LETSBE_SW_PORT=8200
USER 1001:1001
EXPOSE 8200
# No curl in slim images: Python asks /healthz (the process is up; /readyz, deps reachable, is the compose check).
# The check runs inside the container's memory limit: a bare interpreter (-S) and a socket take 10 MB, urllib 21.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-S", "-c", "import os, socket; s = socket.create_connection(('127.0.0.1', int(os.environ['LETSBE_SW_PORT'])), 4); s.sendall(b'GET /healthz HTTP/1.0\\r\\n\\r\\n'); raise SystemExit(0 if s.recv(12)[9:12] == b'200' else 1)"]
CMD ["python", "-m", "letsbe_safety_wrapper"]
