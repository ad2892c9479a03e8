"""A real Debian 12 test VPS on this machine (see docs/test-vps.md)."""
