"""Off-site backup targets of the tenants."""
