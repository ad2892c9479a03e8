from letsbe_platform.migrations import run_env
from letsbe_provisioner import models  # noqa: F401 - registers every table on the metadata
from letsbe_provisioner.db import SCHEMA, Base

run_env(SCHEMA, Base.metadata)
