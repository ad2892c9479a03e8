from letsbe_dns.config import DnsSettings

if __name__ == "__main__":
    settings = DnsSettings()  # first: a refused setting stops it before the app's imports (seconds of CPU)
    from letsbe_dns.app import create_app
    from letsbe_platform.serve import serve

    serve(create_app, settings)
