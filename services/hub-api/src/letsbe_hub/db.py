"""The hub's schema: its declarative base and its outbox/inbox tables."""

from letsbe_platform.db import make_base
from letsbe_platform.outbox import inbox_table, outbox_table

SCHEMA = "hub"

Base = make_base(SCHEMA)
outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
