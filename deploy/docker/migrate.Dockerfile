# migrate: the one-shot `letsbe-migrate` (every service's Alembic tree) that the hub stack runs before the hub
# starts. Build from the repository root:
#   docker build -f deploy/docker/migrate.Dockerfile -t code.letsbe.solutions/letsbe/migrate:VERSION .
# Needs BuildKit (Docker 23+). Base image pinning: deploy/README.md.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs ./libs
COPY services ./services
# Every service: letsbe-migrate finds the trees through the packages' "letsbe.migrations" entry points.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --python /usr/local/bin/python3

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 1001 letsbe \
 && useradd --system --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin letsbe
WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY --from=builder /app/libs /app/libs
COPY --from=builder /app/services /app/services
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 1001:1001
# A one-shot job: compose waits for it to exit 0 (service_completed_successfully); there is nothing to probe.
HEALTHCHECK NONE
CMD ["letsbe-migrate"]
