"""The tenant agent runtime (see runtime.AgentRuntime)."""
