"""Imports every ORM model so Alembic and the mapper see the whole schema. Add each context's models here."""

from letsbe_monitor.alerts.models import Alert, Silence, SweepState
from letsbe_monitor.notify.models import Delivery
from letsbe_monitor.tenants.models import Tenant, TokenPoolFired, UsageReport

__all__ = ["Alert", "Delivery", "Silence", "SweepState", "Tenant", "TokenPoolFired", "UsageReport"]
