"""Imports every ORM model so Alembic and the mapper see the whole schema. Add each context's models here."""

from letsbe_hub.alerts.models import AlertRecord  # noqa: F401
from letsbe_hub.approvals.models import ApprovalRow  # noqa: F401
from letsbe_hub.auth.models import ApiToken
from letsbe_hub.backups.models import BackupTarget  # noqa: F401
from letsbe_hub.billing.models import BillingEmail, Subscription  # noqa: F401
from letsbe_hub.commands.models import Command, CommandTransition  # noqa: F401
from letsbe_hub.credentials.models import CredentialReveal  # noqa: F401
from letsbe_hub.customers.models import Customer, SignInLink  # noqa: F401
from letsbe_hub.lifecycle.models import LifecycleJob, LifecycleJobTransition  # noqa: F401
from letsbe_hub.llm.models import LlmKey, LlmUsage  # noqa: F401
from letsbe_hub.notifications.models import WelcomeEmail  # noqa: F401
from letsbe_hub.operators.models import Operator  # noqa: F401
from letsbe_hub.orders.models import Order, OrderTransition, ProvisioningProgress  # noqa: F401
from letsbe_hub.relay.models import CustomerAppToken  # noqa: F401
from letsbe_hub.rollouts.models import Rollout, RolloutEvent, RolloutTarget  # noqa: F401
from letsbe_hub.servers.models import AllocationHold, MigrationProposal, OverflowServer, PoolPolicy, Server  # noqa: F401
from letsbe_hub.tenants.models import (  # noqa: F401
    Agent,
    AgentCredential,
    AgentDetails,
    BackupReportRow,
    RegistrationToken,
    Tenant,
    TenantComponent,
    UsageReportRow,
)
from letsbe_hub.web.limits import RateCounter  # noqa: F401
from letsbe_hub.web.sessions import WebSession  # noqa: F401
from letsbe_hub.webhooks.models import StripeEvent  # noqa: F401

__all__ = ["ApiToken"]
