from letsbe_platform.serve import serve

from letsbe_monitor.app import create_app
from letsbe_monitor.config import MonitorSettings

if __name__ == "__main__":
    serve(create_app, MonitorSettings())
