"""What each catalog tool needs beyond the catalog: its environment, its data volumes, its extra secrets.

Environment values are ``str.format`` templates over: ``host`` (the tool's subdomain FQDN), ``url``
(``https://{host}``), ``db`` (the database service name), ``db_name``/``db_user`` and every secret of the stack by
name (``db_password``, ``admin_password``, …). A tool without a profile gets a bare stack (image, port, memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SecretKind = Literal["token", "hex32", "laravel", "fernet", "dkim"]  # dkim: an RSA 2048 private key (PEM)


@dataclass(frozen=True)
class Profile:
    env: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, str] = field(default_factory=dict)  # named volume -> path in the container
    secrets: dict[str, SecretKind] = field(default_factory=dict)  # extra per-tenant secrets of this tool
    command: str | None = None
    docker_socket: bool = False
    upstream_scheme: Literal["http", "https"] = "http"
    max_body: str = "64m"
    # Published on every interface and opened in the firewall (step 4): only what must face the internet itself.
    public_ports: tuple[int, ...] = ()
    # Configuration rendered from templates/<tool>/<name>.j2 into the stack's etc/ (0600), mounted at config_dir.
    config_dir: str | None = None
    config_files: tuple[str, ...] = ()


PROFILES: dict[str, Profile] = {
    "nextcloud": Profile(
        env={
            "POSTGRES_HOST": "{db}", "POSTGRES_DB": "{db_name}", "POSTGRES_USER": "{db_user}",
            "POSTGRES_PASSWORD": "{db_password}", "NEXTCLOUD_ADMIN_USER": "admin",
            "NEXTCLOUD_ADMIN_PASSWORD": "{admin_password}", "NEXTCLOUD_TRUSTED_DOMAINS": "{host}",
            "OVERWRITEPROTOCOL": "https", "TRUSTED_PROXIES": "172.16.0.0/12",
        },
        volumes={"app-data": "/var/www/html"},
        secrets={"admin_password": "token"},
        max_body="10g",
    ),
    "chatwoot": Profile(
        env={
            "RAILS_ENV": "production", "SECRET_KEY_BASE": "{secret_key_base}", "FRONTEND_URL": "{url}",
            "POSTGRES_HOST": "{db}", "POSTGRES_DATABASE": "{db_name}", "POSTGRES_USERNAME": "{db_user}",
            "POSTGRES_PASSWORD": "{db_password}", "REDIS_URL": "redis://:{redis_password}@redis:6379",
        },
        volumes={"app-storage": "/app/storage"},
        secrets={"secret_key_base": "token"},
        command="sh -c 'bundle exec rails db:chatwoot_prepare && exec bundle exec rails s -p 3000 -b 0.0.0.0'",
        max_body="40m",
    ),
    "ghost": Profile(
        env={
            "url": "{url}", "database__client": "mysql", "database__connection__host": "{db}",
            "database__connection__user": "{db_user}", "database__connection__password": "{db_password}",
            "database__connection__database": "{db_name}",
        },
        volumes={"app-content": "/var/lib/ghost/content"},
        max_body="50m",
    ),
    "calcom": Profile(
        env={
            "DATABASE_URL": "postgresql://{db_user}:{db_password}@{db}:5432/{db_name}",
            "NEXTAUTH_SECRET": "{nextauth_secret}", "CALENDSO_ENCRYPTION_KEY": "{encryption_key}",
            "NEXT_PUBLIC_WEBAPP_URL": "{url}", "NEXTAUTH_URL": "{url}/api/auth",
        },
        secrets={"nextauth_secret": "token", "encryption_key": "hex32"},
    ),
    # Mail: SMTP 25, submissions 465, submission 587, IMAP 143 / 993, POP3S 995 (what the DNS SRV records name).
    "stalwart": Profile(
        volumes={"app-data": "/opt/stalwart-mail"},
        secrets={"admin_password": "token", "dkim_private_key": "dkim"},
        public_ports=(25, 143, 465, 587, 993, 995),
        config_dir="/opt/stalwart-mail/etc",
        config_files=("config.toml",),
    ),
    "odoo": Profile(
        env={"HOST": "{db}", "USER": "{db_user}", "PASSWORD": "{db_password}"},
        volumes={"app-data": "/var/lib/odoo"},
        max_body="200m",
    ),
    "keycloak": Profile(
        env={
            "KC_DB": "postgres", "KC_DB_URL": "jdbc:postgresql://{db}:5432/{db_name}", "KC_DB_USERNAME": "{db_user}",
            "KC_DB_PASSWORD": "{db_password}", "KC_HOSTNAME": "{url}", "KC_PROXY_HEADERS": "xforwarded",
            "KC_HTTP_ENABLED": "true", "KEYCLOAK_ADMIN": "admin", "KEYCLOAK_ADMIN_PASSWORD": "{admin_password}",
        },
        secrets={"admin_password": "token"},
        command="start --optimized",
    ),
    "listmonk": Profile(
        env={
            "LISTMONK_app__address": "0.0.0.0:9000", "LISTMONK_app__root_url": "{url}",
            "LISTMONK_db__host": "{db}", "LISTMONK_db__port": "5432", "LISTMONK_db__user": "{db_user}",
            "LISTMONK_db__password": "{db_password}", "LISTMONK_db__database": "{db_name}",
            "LISTMONK_db__ssl_mode": "disable", "LISTMONK_ADMIN_USER": "admin",
            "LISTMONK_ADMIN_PASSWORD": "{admin_password}",
        },
        secrets={"admin_password": "token"},
        command="sh -c './listmonk --install --idempotent --yes && exec ./listmonk'",
    ),
    "nocodb": Profile(
        env={"NC_AUTH_JWT_SECRET": "{jwt_secret}", "NC_PUBLIC_URL": "{url}"},
        volumes={"app-data": "/usr/app/data"},
        secrets={"jwt_secret": "token"},
    ),
    "umami": Profile(
        env={"DATABASE_URL": "postgresql://{db_user}:{db_password}@{db}:5432/{db_name}", "APP_SECRET": "{app_secret}"},
        secrets={"app_secret": "token"},
    ),
    "uptime_kuma": Profile(volumes={"app-data": "/app/data"}),
    "portainer": Profile(volumes={"app-data": "/data"}, docker_socket=True, upstream_scheme="https"),
    "activepieces": Profile(
        env={
            "AP_POSTGRES_HOST": "{db}", "AP_POSTGRES_PORT": "5432", "AP_POSTGRES_DATABASE": "{db_name}",
            "AP_POSTGRES_USERNAME": "{db_user}", "AP_POSTGRES_PASSWORD": "{db_password}",
            "AP_ENCRYPTION_KEY": "{encryption_key}", "AP_JWT_SECRET": "{jwt_secret}", "AP_FRONTEND_URL": "{url}",
            "AP_QUEUE_MODE": "MEMORY", "AP_EXECUTION_MODE": "UNSANDBOXED", "AP_TELEMETRY_ENABLED": "false",
        },
        secrets={"encryption_key": "hex32", "jwt_secret": "token"},
    ),
    "bookstack": Profile(
        env={
            "APP_URL": "{url}", "APP_KEY": "{app_key}", "DB_HOST": "{db}", "DB_PORT": "3306",
            "DB_USERNAME": "{db_user}", "DB_PASSWORD": "{db_password}", "DB_DATABASE": "{db_name}",
            "PUID": "1000", "PGID": "1000",
        },
        volumes={"app-config": "/config"},
        secrets={"app_key": "laravel"},
        max_body="100m",
    ),
}  # fmt: skip


def profile(tool: str) -> Profile:
    return PROFILES.get(tool, Profile())
