from letsbe_agent.settings import load_settings
from letsbe_platform.serve import serve
from letsbe_safety_wrapper.app import create_app
from letsbe_safety_wrapper.config import SafetyWrapperSettings

if __name__ == "__main__":
    serve(create_app, load_settings(SafetyWrapperSettings))
