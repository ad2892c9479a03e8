from letsbe_platform.startup import lifelong

if __name__ == "__main__":
    with lifelong():  # imports and settings: built once, kept for the process's life
        from letsbe_monitor.config import MonitorSettings

        settings = MonitorSettings()  # first: a bad setting stops it before the app's imports
        from letsbe_monitor.app import create_app
        from letsbe_platform.serve import serve

    serve(create_app, settings)
