from letsbe_platform.startup import lifelong

if __name__ == "__main__":
    with lifelong():  # imports and settings: built once, kept for the process's life
        from letsbe_provisioner.config import ProvisionerSettings

        settings = ProvisionerSettings()  # first: a bad setting stops it before the app's imports
        from letsbe_platform.serve import serve
        from letsbe_provisioner.app import create_app

    serve(create_app, settings)
