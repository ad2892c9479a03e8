from letsbe_hub.app import create_app
from letsbe_hub.config import HubSettings
from letsbe_platform.serve import serve

if __name__ == "__main__":
    serve(create_app, HubSettings())
