"""Tenant lifecycle jobs (decommission, daily snapshots): resumable state machines run by leased workers."""
