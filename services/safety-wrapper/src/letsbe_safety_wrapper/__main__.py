from letsbe_agent.entry import serve_agent

if __name__ == "__main__":
    serve_agent("letsbe_safety_wrapper.app:create_app", "letsbe_safety_wrapper.config:SafetyWrapperSettings")
