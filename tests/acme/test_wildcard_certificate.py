"""The tenant's wildcard certificate, end to end with real clients (fixtures: conftest.py).

letsbe-tls-ensure and the certbot hooks are the files step 7 renders; the credential they use is the one a real
agent runtime wrote when it registered with the hub; certbot gets the certificate from pebble, which checks the
challenge on the sandbox's authoritative DNS, where the DNS service published it through (fake) Cloudflare.
"""

from __future__ import annotations

import configparser
import os

import dns.asyncquery
import dns.message
from cryptography import x509
from cryptography.x509.oid import NameOID

from letsbe_provisioner.rendering.plan import AGENT_CREDENTIAL, CERTBOT_CA_DROPIN, TLS_DIR

DOMAIN, OTHER_DOMAIN = "example.com", "example.net"  # the fixtures' zones (conftest.Cloudflare)
VALIDATION = "gfj9Xq-Xvv9fZV5vC3jYSo6bVv0AjhQ7q4H2o4NYWLM"


def certificate(tenant, path: str = f"{TLS_DIR}/fullchain.pem") -> x509.Certificate:
    return x509.load_pem_x509_certificate(tenant.path(path).read_bytes())


def names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName))


def issuer(cert: x509.Certificate) -> str:
    return cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


async def txt_served(port: int, name: str) -> list[str]:
    response = await dns.asyncquery.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", port=port, timeout=2)
    return sorted(b"".join(rd.strings).decode() for rrset in response.answer for rd in rrset)


def hook(tenant, kind: str, domain: str):
    env = {"CERTBOT_DOMAIN": domain, "CERTBOT_VALIDATION": VALIDATION}
    return tenant.run("sh", str(tenant.path(f"/etc/letsbe/acme/{kind}-hook.sh")), env=env)


async def test_the_rendered_hooks_authenticate_with_the_credential_the_agent_wrote(
    tenant, agents, cloudflare, dns_service
):
    assert (cloudflare.domain, cloudflare.other_domain) == (DOMAIN, OTHER_DOMAIN)
    # Before the agent registers there is no credential: the hook says so instead of sending an empty key.
    early = hook(tenant, "auth", DOMAIN)
    assert early.returncode != 0 and "no agent credential" in early.stderr

    agent = await agents.start(tenant)
    credential = tenant.path(AGENT_CREDENTIAL)
    assert credential.exists(), "the agent writes its credential where the rendered hooks read it"
    assert os.stat(credential).st_mode & 0o077 == 0

    cloudflare.fake.dns_delay(0.5)  # the hook must return only once the nameservers serve the record
    done = hook(tenant, "auth", DOMAIN)
    assert done.returncode == 0, done.stderr + dns_service.logs()[-3000:]
    # certbot asks the CA to validate right after the hook returns: the record must be served by then.
    assert await txt_served(cloudflare.dns.port, f"_acme-challenge.{DOMAIN}") == [VALIDATION]
    done = hook(tenant, "cleanup", DOMAIN)
    assert done.returncode == 0, done.stderr
    assert cloudflare.fake.records(DOMAIN, type="TXT") == []
    assert agent.runtime.credential is not None
    assert agent.runtime.credential.api_key not in dns_service.logs()

    # Another tenant's domain: refused (403), and nothing is published there.
    refused = hook(tenant, "auth", OTHER_DOMAIN)
    assert refused.returncode != 0
    assert "403" in refused.stderr and f"not {DOMAIN} or a name below it" in refused.stderr
    assert cloudflare.fake.records(OTHER_DOMAIN, type="TXT") == []


async def test_certbot_gets_renews_and_installs_the_wildcard_from_pebble_and_is_refused_another_domain(
    tenant, agents, cloudflare, pebble
):
    # Step 7 on a new server: no credential yet, so a self-signed stand-in keeps nginx up.
    first = tenant.tls_ensure()
    assert first.returncode == 0, first.stderr
    assert "self-signed stand-in" in first.stdout
    stand_in = certificate(tenant)
    assert names(stand_in) == {DOMAIN, f"*.{DOMAIN}"} and stand_in.issuer == stand_in.subject

    # Step 10: the Safety Wrapper registers. The next cron run of letsbe-tls-ensure issues the real certificate.
    await agents.start(tenant)
    issued = tenant.tls_ensure()
    assert issued.returncode == 0, issued.stdout + issued.stderr
    assert "installed the Let's Encrypt certificate" in issued.stdout
    cert = certificate(tenant)
    assert names(cert) == {DOMAIN, f"*.{DOMAIN}"}
    assert issuer(cert).startswith("Pebble Intermediate CA"), "issued by pebble, not the stand-in"
    assert cloudflare.fake.records(DOMAIN, type="TXT") == [], "the cleanup hook removed both challenges"
    # pebble validated both challenges itself (no PEBBLE_VA_ALWAYS_VALID) by asking the sandbox's DNS server.
    assert pebble.log.read_text().count("set VALID by completed challenge") == 2

    # Nothing due: a second run changes nothing.
    again = tenant.tls_ensure()
    assert again.returncode == 0 and "installed" not in again.stdout
    assert certificate(tenant).serial_number == cert.serial_number

    # certbot renew, as Debian's certbot.timer runs it (with the rendered drop-in's environment): the hooks
    # stored in the renewal config run again and letsbe-tls-ensure installs the new certificate.
    renew_env = dropin_environment(tenant)
    renewed = tenant.certbot("renew", "--force-renewal", "--no-random-sleep-on-renew", env=renew_env)
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    installed = tenant.tls_ensure()
    assert installed.returncode == 0 and "installed" in installed.stdout, installed.stderr
    new = certificate(tenant)
    assert new.serial_number != cert.serial_number and names(new) == {DOMAIN, f"*.{DOMAIN}"}
    assert issuer(new).startswith("Pebble Intermediate CA")
    assert pebble.log.read_text().count("set VALID by completed challenge") == 4

    # Another tenant's domain with this tenant's credential: the DNS service answers 403, the hook fails, and
    # certbot gets nothing.
    auth = str(tenant.path("/etc/letsbe/acme/auth-hook.sh"))
    cleanup = str(tenant.path("/etc/letsbe/acme/cleanup-hook.sh"))
    refused = tenant.certbot(
        "certonly", "--manual", "--preferred-challenges", "dns",
        "--manual-auth-hook", auth, "--manual-cleanup-hook", cleanup,
        "-d", OTHER_DOMAIN, "-d", f"*.{OTHER_DOMAIN}", "--server", tenant.plan.settings.acme_directory_url,
        "--non-interactive", "--agree-tos", "-m", "ssl@letsbe.biz",
        env=renew_env,
    )  # fmt: skip
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "403" in output and f"not {DOMAIN} or a name below it" in output, output
    assert not tenant.path(f"/etc/letsencrypt/live/{OTHER_DOMAIN}").exists()
    assert cloudflare.fake.records(OTHER_DOMAIN, type="TXT") == []


def dropin_environment(tenant) -> dict[str, str]:
    """The Environment= of the certbot.service drop-in step 7 rendered, its paths under the tenant's root."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(tenant.path(CERTBOT_CA_DROPIN))
    name, value = parser["Service"]["Environment"].split("=", 1)
    assert name == "REQUESTS_CA_BUNDLE"
    return {name: str(tenant.path(value))}
