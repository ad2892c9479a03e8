from letsbe_platform.errors import DomainError, Forbidden, ServiceUnavailable, Unauthorized


class AgentNotAuthenticated(Unauthorized):
    type, title = "agent-unauthorized", "Agent credential required"


class NotYourDomain(Forbidden):
    type, title = "acme-domain-forbidden", "Not the tenant's domain"


class HubUnavailable(ServiceUnavailable):
    type, title = "hub-unavailable", "The hub could not confirm the agent"


class ChallengeNotVisible(DomainError):
    status_code, type, title = 504, "acme-challenge-not-visible", "Challenge record not served yet"


class CloudflareRefused(DomainError):
    status_code, type, title = 502, "cloudflare-error", "Cloudflare refused the change"
