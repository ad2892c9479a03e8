"""Names of the agent protocol that are not bodies (``agent.py`` has those), in a module without pydantic: the tenant
agents read them too, and keep pydantic out of their memory."""

# The agent keeps its hub credential in <state dir>/CREDENTIAL_FILE: JSON {"agent_id", "tenant_id", "api_key"}, 0600.
# The tenant's certbot DNS-01 hooks read "api_key" from the Safety Wrapper's copy (letsbe_provisioner's
# AGENT_CREDENTIAL), so this name is part of the contract between the agent and what the provisioner renders.
CREDENTIAL_FILE = "credential.json"
# The hub's OpenAI-compatible LLM relay (a tenant's Secrets Proxy sends /chat/completions, /responses under it).
LLM_RELAY_PATH = "/api/v1/llm/v1"


def openclaw_chat_request(text: str, model: str = "openclaw") -> dict[str, object]:
    """One customer message as the Safety Wrapper's chat relay sends it to OpenClaw's gateway (OpenAI Chat
    Completions, at the LETSBE_SW_CHAT_URL the provisioner renders). ``model`` names the agent ("openclaw": the
    default one); the same ``user`` every time keeps the conversation in one agent session (the gateway derives it
    from ``user``)."""
    return {"model": model, "messages": [{"role": "user", "content": text}], "user": "letsbe-customer"}
