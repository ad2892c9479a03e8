from letsbe_dns.app import create_app
from letsbe_dns.config import DnsSettings
from letsbe_platform.serve import serve

if __name__ == "__main__":
    serve(create_app, DnsSettings())
