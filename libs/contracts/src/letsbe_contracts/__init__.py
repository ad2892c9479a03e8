"""Contracts shared by every LetsBe service: events, enums and the tool catalog.

The names below are loaded when first used (PEP 562): ``letsbe_contracts.enums`` and ``.protocol`` are plain
Python, and a tenant agent that imports only those does not load pydantic and every model with them."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from letsbe_contracts.catalog import LETSBE_OVERHEAD_MB, Catalog, ServerNeeds, Tool, load_catalog
    from letsbe_contracts.enums import (
        AgentKind,
        AlertSeverity,
        AutomationMode,
        FailureStage,
        OrderStatus,
        Provider,
        Region,
        StepStatus,
        Tier,
    )
    from letsbe_contracts.events import (
        EVENT_TYPES,
        AlertRaisedV1,
        AlertResolvedV1,
        DeadLetteredV1,
        DnsReadyV1,
        DnsRecordRef,
        Envelope,
        Event,
        HeartbeatDetails,
        OrderCreatedV1,
        OrderFailedV1,
        OrderSpec,
        ProvisionedV1,
        ProvisioningLogV1,
        ProvisioningStepV1,
        ServerAllocatedV1,
        ServerTarget,
        TenantHeartbeatV1,
        decode,
    )

_LAZY = {
    "LETSBE_OVERHEAD_MB": "letsbe_contracts.catalog",
    "Catalog": "letsbe_contracts.catalog",
    "ServerNeeds": "letsbe_contracts.catalog",
    "Tool": "letsbe_contracts.catalog",
    "load_catalog": "letsbe_contracts.catalog",
    "AgentKind": "letsbe_contracts.enums",
    "AlertSeverity": "letsbe_contracts.enums",
    "AutomationMode": "letsbe_contracts.enums",
    "FailureStage": "letsbe_contracts.enums",
    "OrderStatus": "letsbe_contracts.enums",
    "Provider": "letsbe_contracts.enums",
    "Region": "letsbe_contracts.enums",
    "StepStatus": "letsbe_contracts.enums",
    "Tier": "letsbe_contracts.enums",
    "EVENT_TYPES": "letsbe_contracts.events",
    "AlertRaisedV1": "letsbe_contracts.events",
    "AlertResolvedV1": "letsbe_contracts.events",
    "DeadLetteredV1": "letsbe_contracts.events",
    "DnsReadyV1": "letsbe_contracts.events",
    "DnsRecordRef": "letsbe_contracts.events",
    "Envelope": "letsbe_contracts.events",
    "Event": "letsbe_contracts.events",
    "HeartbeatDetails": "letsbe_contracts.events",
    "OrderCreatedV1": "letsbe_contracts.events",
    "OrderFailedV1": "letsbe_contracts.events",
    "OrderSpec": "letsbe_contracts.events",
    "ProvisionedV1": "letsbe_contracts.events",
    "ProvisioningLogV1": "letsbe_contracts.events",
    "ProvisioningStepV1": "letsbe_contracts.events",
    "ServerAllocatedV1": "letsbe_contracts.events",
    "ServerTarget": "letsbe_contracts.events",
    "TenantHeartbeatV1": "letsbe_contracts.events",
    "decode": "letsbe_contracts.events",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EVENT_TYPES",
    "LETSBE_OVERHEAD_MB",
    "AgentKind",
    "AlertRaisedV1",
    "AlertResolvedV1",
    "AlertSeverity",
    "AutomationMode",
    "Catalog",
    "DeadLetteredV1",
    "DnsReadyV1",
    "DnsRecordRef",
    "Envelope",
    "Event",
    "FailureStage",
    "HeartbeatDetails",
    "OrderCreatedV1",
    "OrderFailedV1",
    "OrderSpec",
    "OrderStatus",
    "Provider",
    "ProvisionedV1",
    "ProvisioningLogV1",
    "ProvisioningStepV1",
    "Region",
    "ServerAllocatedV1",
    "ServerNeeds",
    "ServerTarget",
    "StepStatus",
    "TenantHeartbeatV1",
    "Tier",
    "Tool",
    "decode",
    "load_catalog",
]
