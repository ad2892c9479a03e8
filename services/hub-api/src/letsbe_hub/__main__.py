from letsbe_hub.config import HubSettings

if __name__ == "__main__":
    settings = HubSettings()  # first: a refused setting stops it before the app's imports (seconds of CPU)
    from letsbe_hub.app import create_app
    from letsbe_platform.serve import serve

    # The chat relay's WebSocket routes (relay/): a larger message is closed with 1009 by the protocol itself.
    serve(create_app, settings, ws_max_bytes=settings.relay_max_message_bytes)
