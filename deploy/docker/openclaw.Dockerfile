# openclaw: the LetsBe OpenClaw gateway (seed §4.3) on port 18789, from the npm release pinned below. Build from
# the repository root:
#   docker build -f deploy/docker/openclaw.Dockerfile -t code.letsbe.solutions/letsbe/openclaw:VERSION .
# The tenant's configuration is rendered by the provisioner (templates/openclaw/openclaw.json.j2) and mounted
# read-only at OPENCLAW_CONFIG_PATH; its keys come from the 0600 openclaw.env. Base image pinning: deploy/README.md.
# OPENCLAW_VERSION must equal letsbe_provisioner.rendering.plan.OPENCLAW_VERSION (the version the rendered
# configuration is tested against; deploy/tests/test_images.py checks it). Node: openclaw's engines want 24.16+.
ARG NODE_IMAGE=node:24.22.3-bookworm-slim

FROM ${NODE_IMAGE}
ARG OPENCLAW_VERSION=2026.9.6
# Seed §4.3: curl and jq, the agent's way to call the Safety Wrapper. The seed's gog (Google) and himalaya (IMAP)
# CLIs are left out on purpose: they would talk to outside services directly, around the Safety Wrapper (and the
# container has no route out). Debian security updates move these versions; the base image digest pins the rest.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl jq \
 && rm -rf /var/lib/apt/lists/*
# The exact release, installed as root (the gateway cannot change its own code); no npm cache left behind.
RUN npm install --global --no-audit --no-fund "openclaw@${OPENCLAW_VERSION}" \
 && npm cache clean --force \
 && openclaw --version
# The seed's user and directories (its state volume is mounted on /home/openclaw/.openclaw).
RUN groupadd --system --gid 1002 openclaw \
 && useradd --system --uid 1002 --gid 1002 --create-home --home-dir /home/openclaw --shell /usr/sbin/nologin openclaw \
 && mkdir -p /home/openclaw/.openclaw/agents /home/openclaw/.openclaw/skills /home/openclaw/.openclaw/references \
             /home/openclaw/.openclaw/data /home/openclaw/.openclaw/shared-memory /etc/openclaw \
 && chown -R openclaw:openclaw /home/openclaw
# The LetsBe skill (how to call tools through the Safety Wrapper), read-only for the agent.
COPY deploy/docker/openclaw/skills /opt/letsbe/openclaw/skills
ENV NODE_ENV=production \
    OPENCLAW_CONFIG_PATH=/etc/openclaw/openclaw.json \
    OPENCLAW_CONFIG_READONLY=1
USER 1002:1002
WORKDIR /home/openclaw
EXPOSE 18789
# /healthz needs no token (liveness only); node is there, curl would do too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:18789/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["openclaw", "gateway", "run"]
