"""ACME DNS-01: tenants' certbot hooks set and remove ``_acme-challenge`` TXT records through this service."""
