from letsbe_platform.serve import serve
from letsbe_provisioner.app import create_app
from letsbe_provisioner.config import ProvisionerSettings

if __name__ == "__main__":
    serve(create_app, ProvisionerSettings())
