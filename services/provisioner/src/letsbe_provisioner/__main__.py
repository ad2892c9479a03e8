from letsbe_provisioner.app import create_app
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_platform.serve import serve

if __name__ == "__main__":
    serve(create_app, ProvisionerSettings())
