from letsbe_monitor.config import MonitorSettings

if __name__ == "__main__":
    settings = MonitorSettings()  # first: a refused setting stops it before the app's imports (seconds of CPU)
    from letsbe_monitor.app import create_app
    from letsbe_platform.serve import serve

    serve(create_app, settings)
