"""``python -m letsbe_hub.lifecycle``: a process that only runs lifecycle jobs (settings from LETSBE_HUB_*)."""

import asyncio

from letsbe_hub.lifecycle.worker import main

asyncio.run(main())
