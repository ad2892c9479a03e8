"""Which email domains the public order route refuses (how often a client may try: letsbe_hub.web.limits)."""

from __future__ import annotations

from letsbe_platform.errors import DomainError


class DisposableEmail(DomainError):
    status_code, type, title = 422, "disposable-email", "Disposable email address"


def refuse_disposable(email: str, extra: list[str]) -> None:
    """422 when the email's domain, or a domain it is under, is a disposable-mail provider."""
    from disposable_email_domains import blocklist  # a set of 100k+ names: built at the first order, not at start-up

    domain = email.rpartition("@")[2].lower().rstrip(".")
    labels = domain.split(".")
    own = {d.lower() for d in extra}
    for i in range(len(labels) - 1):
        candidate = ".".join(labels[i:])
        if candidate in blocklist or candidate in own:
            raise DisposableEmail(
                f"Addresses at {domain} are disposable; use an address you will still read next month "
                "(invoices and your server's sign-in links go there).",
                email_domain=domain,
            )
