from letsbe_safety_wrapper.app import create_app
from letsbe_safety_wrapper.config import SafetyWrapperSettings
from letsbe_platform.serve import serve

if __name__ == "__main__":
    serve(create_app, SafetyWrapperSettings())
