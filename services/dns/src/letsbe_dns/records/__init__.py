"""Records context: the Cloudflare records of each tenant's domain, and their tracking for decommission."""
