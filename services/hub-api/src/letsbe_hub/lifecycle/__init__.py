"""Tenant lifecycle jobs (decommission, daily snapshots, restore, recovery of a lost server, migration Hetzner ->
Netcup): resumable state machines run by leased workers."""
