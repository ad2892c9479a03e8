"""The chat relay: a customer's app talks to their tenant's AI agent over WebSockets through the hub."""
