from letsbe_agent.entry import serve_agent

if __name__ == "__main__":
    serve_agent("letsbe_secrets_proxy.app:create_app", "letsbe_secrets_proxy.config:SecretsProxySettings")
