"""The tenant end of the hub's chat relay: customers' messages to the AI agent, its answers back."""
