from letsbe_platform.startup import lifelong

if __name__ == "__main__":
    with lifelong():  # imports and settings: built once, kept for the process's life
        from letsbe_hub.config import HubSettings

        settings = HubSettings()  # first: a bad setting stops it before the app's imports
        from letsbe_hub.app import create_app
        from letsbe_platform.serve import serve

    # The chat relay's WebSocket routes (relay/): a larger message is closed with 1009 by the protocol itself.
    serve(create_app, settings, ws_max_bytes=settings.relay_max_message_bytes)
