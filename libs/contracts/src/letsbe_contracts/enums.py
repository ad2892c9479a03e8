"""Enumerations shared by every service. Values are the wire format: never rename one."""

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "PENDING_PAYMENT"
    PAYMENT_CONFIRMED = "PAYMENT_CONFIRMED"
    AWAITING_SERVER = "AWAITING_SERVER"
    SERVER_READY = "SERVER_READY"
    DNS_PENDING = "DNS_PENDING"
    DNS_READY = "DNS_READY"
    PROVISIONING = "PROVISIONING"
    FULFILLED = "FULFILLED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Tier(StrEnum):
    LITE = "lite"
    BUILD = "build"
    SCALE = "scale"
    ENTERPRISE = "enterprise"


class Region(StrEnum):
    EU = "eu"
    US = "us"


class Provider(StrEnum):
    NETCUP = "netcup"
    HETZNER = "hetzner"


class AlertSeverity(StrEnum):
    SOFT = "soft"
    MEDIUM = "medium"
    HARD = "hard"


class AutomationMode(StrEnum):
    AUTO = "AUTO"
    MANUAL = "MANUAL"


class FailureStage(StrEnum):
    """Where an order failed; a retry resumes here."""

    PAYMENT = "PAYMENT"
    ALLOCATION = "ALLOCATION"
    DNS = "DNS"
    PROVISIONING = "PROVISIONING"


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class AgentKind(StrEnum):
    SAFETY_WRAPPER = "safety-wrapper"
    SECRETS_PROXY = "secrets-proxy"
