#!/usr/bin/env bash
# Installs the Debian packages that tests drive for real, only when they are missing.
#   nginx   deploy/tests render the hub and tenant vhosts and run `nginx -t` on them
#   rclone  deploy/tests copy a backup off-site to a local rclone remote
#   certbot, pebble  tests/acme issue a wildcard certificate with the rendered hooks from Let's Encrypt's test CA
#   jq, curl  the rendered certbot hooks read the agent's credential and call the DNS service (step 2 installs them)
#   prometheus, prometheus-alertmanager
#           deploy/tests check the rules and the config with promtool, Alertmanager's routing with amtool
#   npm     provisioner tests install the pinned OpenClaw and a Node 24 from the npm registry (scripts/ensure-openclaw.sh)
#   debootstrap, systemd-container, docker-registry
#           the Debian 12 test VPS (libs/testvps): its image, systemd-nspawn, the registry of image stand-ins
#   chromium, chromium-driver  the portal's and console's pages are tested in headless Chromium (Selenium)
#   postgresql-15  a Postgres with TLS, for the DATABASE_URL certificate parameters a managed Postgres needs
#           (libs/platform/tests/test_db.py; the pgserver wheel's Postgres is built without TLS)
# (shellcheck and hadolint come from PyPI wheels in the dev group; Postgres 16 from the pgserver wheel.)
set -euo pipefail
needed=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || needed+=(nginx)
command -v rclone >/dev/null 2>&1 || needed+=(rclone)
command -v certbot >/dev/null 2>&1 || needed+=(certbot)
command -v pebble >/dev/null 2>&1 || needed+=(pebble)
command -v jq >/dev/null 2>&1 || needed+=(jq)
command -v curl >/dev/null 2>&1 || needed+=(curl)
command -v npm >/dev/null 2>&1 || needed+=(npm)
command -v promtool >/dev/null 2>&1 || needed+=(prometheus)
command -v amtool >/dev/null 2>&1 || needed+=(prometheus-alertmanager)
[ -x /usr/sbin/debootstrap ] || needed+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || needed+=(systemd-container)
command -v docker-registry >/dev/null 2>&1 || needed+=(docker-registry)
[ -x /usr/bin/chromium ] || needed+=(chromium)
[ -x /usr/bin/chromedriver ] || needed+=(chromium-driver)
[ -x /usr/lib/postgresql/15/bin/postgres ] || needed+=(postgresql-15)
if [ ${#needed[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${needed[*]} (run as root or install them)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
# Debian's packages start their services; the tests start their own registry per test VPS and their own Postgres
# servers, and need no running Prometheus or Alertmanager (only their check tools).
if command -v systemctl >/dev/null 2>&1; then
  for service in docker-registry prometheus prometheus-alertmanager; do
    if [[ " ${needed[*]} " == *" $service "* ]]; then
      systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
  done
fi
if [[ " ${needed[*]} " == *" postgresql-15 "* ]] && command -v pg_dropcluster >/dev/null 2>&1; then
  pg_dropcluster --stop 15 main >/dev/null 2>&1 || true  # the cluster the package made (and started on 5432)
fi
