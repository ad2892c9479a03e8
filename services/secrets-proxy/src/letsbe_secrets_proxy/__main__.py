from letsbe_agent.settings import load_settings
from letsbe_platform.serve import serve
from letsbe_secrets_proxy.app import create_app
from letsbe_secrets_proxy.config import SecretsProxySettings

if __name__ == "__main__":
    serve(create_app, load_settings(SecretsProxySettings))
