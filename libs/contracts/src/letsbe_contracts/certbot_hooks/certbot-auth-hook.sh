#!/bin/sh
# certbot --manual-auth-hook for DNS-01 (wildcard certificates): asks LetsBe's DNS service to publish
# _acme-challenge.$CERTBOT_DOMAIN with $CERTBOT_VALIDATION, authenticated with this tenant's agent credential.
# The service answers once the zone's authoritative nameservers serve the record, so no sleep is needed here.
# Rendered by the provisioner (letsbe_contracts.certbot_hooks.render); the tenant never holds a Cloudflare token.
set -eu

DNS_URL='@@LETSBE_DNS_URL@@'
CREDENTIAL_FILE='@@LETSBE_AGENT_CREDENTIAL_FILE@@'

: "${CERTBOT_DOMAIN:?certbot sets CERTBOT_DOMAIN}"
: "${CERTBOT_VALIDATION:?certbot sets CERTBOT_VALIDATION}"

# The Safety Wrapper's own credential file (JSON, written by the agent when it registers): its api_key.
if ! key=$(jq -er '.api_key | select(type == "string" and length > 0)' "$CREDENTIAL_FILE" 2>/dev/null); then
  printf 'no agent credential in %s yet: the Safety Wrapper writes it when it registers with the Hub\n' \
    "$CREDENTIAL_FILE" >&2
  exit 1
fi
# The credential reaches curl as a config on stdin, so it never shows in the process list.
# On failure the problem+json answer goes to stderr, which certbot shows.
if ! answer=$(printf 'header = "Authorization: Bearer %s"\n' "$key" | curl --silent --show-error --fail-with-body \
  --config - --max-time 300 --retry 3 --retry-delay 5 \
  --header 'Content-Type: application/json' \
  --request POST \
  --data "{\"domain\": \"${CERTBOT_DOMAIN}\", \"validation\": \"${CERTBOT_VALIDATION}\"}" \
  "${DNS_URL}/api/v1/tenant/acme-challenge" 2>&1); then
  printf 'LetsBe DNS could not publish the challenge for %s: %s\n' "$CERTBOT_DOMAIN" "$answer" >&2
  exit 1
fi
