from letsbe_monitor.app import create_app
from letsbe_monitor.config import MonitorSettings
from letsbe_platform.serve import serve

if __name__ == "__main__":
    serve(create_app, MonitorSettings())
