"""Names of the agent protocol that are not bodies (``agent.py`` has those), in a module without pydantic: the tenant
agents read them too, and keep pydantic out of their memory."""

# The agent keeps its hub credential in <state dir>/CREDENTIAL_FILE: JSON {"agent_id", "tenant_id", "api_key"}, 0600.
# The tenant's certbot DNS-01 hooks read "api_key" from the Safety Wrapper's copy (letsbe_provisioner's
# AGENT_CREDENTIAL), so this name is part of the contract between the agent and what the provisioner renders.
CREDENTIAL_FILE = "credential.json"
# The hub's OpenAI-compatible LLM relay (a tenant's Secrets Proxy sends /chat/completions, /responses under it).
LLM_RELAY_PATH = "/api/v1/llm/v1"
