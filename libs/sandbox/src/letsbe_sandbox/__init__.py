"""Sandbox mode: with no provider credentials, `make run` talks to loopback fakes of Stripe, Cloudflare, Hetzner and
Netcup (the same ones the tests use, from ``letsbe_fakes``), provisions a loopback SSH "VPS", and runs the tenant
agents as local processes. The services' code is unchanged: only their endpoints and targets differ."""
