"""certbot ``--manual-auth-hook`` / ``--manual-cleanup-hook`` scripts for DNS-01, as templates to render.

They are the client side of the DNS service's ``/api/v1/tenant/acme-challenge`` route, so they live here, shared
by that service and the provisioner that renders them.

The provisioner writes them onto the tenant and runs, for example::

    certbot certonly --manual --preferred-challenges dns \\
      --manual-auth-hook /opt/letsbe/certbot/auth-hook.sh \\
      --manual-cleanup-hook /opt/letsbe/certbot/cleanup-hook.sh \\
      -d "example.com" -d "*.example.com" --non-interactive --agree-tos -m ssl@letsbe.biz

Renewals (``certbot renew``) reuse the hooks stored in the renewal config, so they keep working unattended.
"""

from __future__ import annotations

import re
from importlib import resources

HOOKS = {"auth": "certbot-auth-hook.sh", "cleanup": "certbot-cleanup-hook.sh"}

_URL = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/-]*)?$")
_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")


def template(kind: str) -> str:
    """The raw template text of the ``auth`` or ``cleanup`` hook."""
    return resources.files(__package__).joinpath(HOOKS[kind]).read_text(encoding="utf-8")


def render(*, dns_url: str, credential_file: str) -> dict[str, str]:
    """``{"auth": script, "cleanup": script}`` for a tenant.

    ``dns_url``: where the tenant reaches the DNS service's ``/api/v1/tenant/acme-challenge`` (that service,
    or the hub when it fronts the route). ``credential_file``: the path on the tenant of the Safety Wrapper's
    credential, the JSON file the agent writes when it registers (``api_key`` is read with jq; the key itself
    never goes into the script). Both are checked, since they land in shell.
    """
    url = dns_url.rstrip("/")
    if not _URL.match(url):
        raise ValueError("dns_url must be an http(s) URL without quotes, query or spaces")
    if not _PATH.match(credential_file):
        raise ValueError("credential_file must be an absolute path of letters, digits, '.', '_', '-' and '/'")
    return {
        kind: template(kind)
        .replace("@@LETSBE_DNS_URL@@", url)
        .replace("@@LETSBE_AGENT_CREDENTIAL_FILE@@", credential_file)
        for kind in HOOKS
    }
