# hub-backup: backup.sh / restore.sh with the Postgres 16 client tools and rclone, for the hub stack's `backup`
# and `restore` jobs (docs/runbook.md). Build from the repository root:
#   docker build -f deploy/docker/backup.Dockerfile -t code.letsbe.solutions/letsbe/hub-backup:VERSION .
# The client tools come from the same postgres image as the database, so pg_dump always matches the server.
ARG POSTGRES_IMAGE=postgres:16-bookworm

FROM ${POSTGRES_IMAGE}
# Debian's rclone; versions follow the pinned base image's Debian release (its security updates included).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends rclone ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1001 letsbe \
 && useradd --system --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin letsbe
COPY deploy/hub/backup-lib.sh deploy/hub/backup.sh deploy/hub/restore.sh /usr/local/bin/
USER 1001:1001
# One-shot jobs started by cron or by hand; their exit code is the health signal.
HEALTHCHECK NONE
ENTRYPOINT []
CMD ["backup.sh"]
