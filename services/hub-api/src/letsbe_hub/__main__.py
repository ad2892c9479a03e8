from letsbe_hub.app import create_app
from letsbe_hub.config import HubSettings
from letsbe_platform.serve import serve

if __name__ == "__main__":
    settings = HubSettings()
    # The chat relay's WebSocket routes (relay/): a larger message is closed with 1009 by the protocol itself.
    serve(create_app, settings, ws_max_bytes=settings.relay_max_message_bytes)
