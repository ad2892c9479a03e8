from letsbe_dns import models  # noqa: F401 - registers every table on the metadata
from letsbe_dns.db import SCHEMA, Base
from letsbe_platform.migrations import run_env

run_env(SCHEMA, Base.metadata)
