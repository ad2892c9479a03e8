from letsbe_platform.errors import DomainError


class InvalidWebhook(DomainError):
    """A bad signature, a stale timestamp or a payload that is not a Stripe event: 400, nothing written."""

    status_code, type, title = 400, "invalid-webhook", "Invalid webhook"
