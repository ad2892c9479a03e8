"""Self-serve subscriptions: the website's order route, Stripe Prices, and billing events that drive the tenant."""
