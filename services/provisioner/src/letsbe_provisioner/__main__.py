from letsbe_provisioner.config import ProvisionerSettings

if __name__ == "__main__":
    settings = ProvisionerSettings()  # first: a refused setting stops it before the app's imports (seconds of CPU)
    from letsbe_platform.serve import serve
    from letsbe_provisioner.app import create_app

    serve(create_app, settings)
