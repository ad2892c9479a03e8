from letsbe_platform.errors import DomainError


class PaymentProviderError(DomainError):
    """Stripe refused or could not be reached; nothing was written."""

    status_code, type, title = 502, "payment-provider", "Payment provider error"


class PaymentsNotConfigured(DomainError):
    status_code, type, title = 503, "payments-not-configured", "Payments are not configured"
