"""What each catalog tool needs beyond the catalog: its environment, its data volumes, its extra secrets.

Environment values are ``str.format`` templates over: ``host`` (the tool's subdomain FQDN), ``url``
(``https://{host}``), ``db`` (the database service name), ``db_name``/``db_user``, ``admin_email`` (the customer's
email) and every secret of the stack by name (``db_password``, ``admin_password``, …). A tool without a profile gets a
bare stack (image, port, memory).

No open admin doors: every tool's admin account is created by the provisioner with a generated password, through the
tool's documented environment variables or, where it has none, by ``templates/setup/<tool>.sh.j2`` (run by step 9
after the stack started and before nginx serves it). Routes that hand the tool to whoever comes first are closed in
its vhost (``closed_routes``). The customer gets ``admin`` through the hub's one-time reveal; the Safety Wrapper gets
``agent_secrets`` as SECRET_REFs (step 10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# dkim: an RSA 2048 private key (PEM); password: a login password with upper, lower, digit and symbol (the strictest
# policies here: Cal.com's admin, NocoDB's NC_ADMIN_PASSWORD).
SecretKind = Literal["token", "hex32", "laravel", "fernet", "dkim", "password"]


@dataclass(frozen=True)
class Admin:
    """The tool's admin login the customer gets (``login``: a format template, e.g. ``admin`` or ``{admin_email}``)."""

    login: str = "admin"
    password: str = "admin_password"  # noqa: S105 - the name of the stack secret holding it


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
    admin: Admin | None = None
    # templates/setup/<tool>.sh.j2 completes the admin account after the stack started (step 9).
    setup: bool = False
    # Paths (prefixes) the vhost refuses: first-run setup pages the provisioner completed itself. "all": every
    # method; "writes": only GET/HEAD pass (the app's UI still asks whether setup is done).
    closed_routes: dict[str, Literal["all", "writes"]] = field(default_factory=dict)
    # False: no public vhost at all (reachable on 127.0.0.1 and from the Safety Wrapper only).
    public: bool = True
    # Secrets the Safety Wrapper holds for this tool as SECRET_REF(name): name -> a format template over the stack's
    # values (known before start). Values only the running tool can issue are captured by its setup script instead.
    agent_secrets: dict[str, str] = field(default_factory=dict)


PROFILES: dict[str, Profile] = {
    "nextcloud": Profile(
        env={
            "POSTGRES_HOST": "{db}", "POSTGRES_DB": "{db_name}", "POSTGRES_USER": "{db_user}",
            "POSTGRES_PASSWORD": "{db_password}", "NEXTCLOUD_ADMIN_USER": "admin",
            "NEXTCLOUD_ADMIN_PASSWORD": "{admin_password}", "NEXTCLOUD_TRUSTED_DOMAINS": "{host}",
            "OVERWRITEPROTOCOL": "https", "TRUSTED_PROXIES": "172.16.0.0/12",
        },
        volumes={"app-data": "/var/www/html"},
        secrets={"admin_password": "password"},
        admin=Admin(),
        max_body="10g",
    ),
    "chatwoot": Profile(
        env={
            "RAILS_ENV": "production", "SECRET_KEY_BASE": "{secret_key_base}", "FRONTEND_URL": "{url}",
            "POSTGRES_HOST": "{db}", "POSTGRES_DATABASE": "{db_name}", "POSTGRES_USERNAME": "{db_user}",
            "POSTGRES_PASSWORD": "{db_password}", "REDIS_URL": "redis://:{redis_password}@redis:6379",
            "ENABLE_ACCOUNT_SIGNUP": "false",
        },
        volumes={"app-storage": "/app/storage"},
        secrets={"secret_key_base": "token", "admin_password": "password"},
        admin=Admin("{admin_email}"), setup=True,
        closed_routes={"/installation/onboarding": "all"},
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
        secrets={"admin_password": "password"},
        admin=Admin("{admin_email}"), setup=True,
        closed_routes={"/ghost/api/admin/authentication/setup": "writes"},
        max_body="50m",
    ),
    "calcom": Profile(
        env={
            "DATABASE_URL": "postgresql://{db_user}:{db_password}@{db}:5432/{db_name}",
            "NEXTAUTH_SECRET": "{nextauth_secret}", "CALENDSO_ENCRYPTION_KEY": "{encryption_key}",
            "NEXT_PUBLIC_WEBAPP_URL": "{url}", "NEXTAUTH_URL": "{url}/api/auth",
            "NEXT_PUBLIC_DISABLE_SIGNUP": "true",
        },
        secrets={"nextauth_secret": "token", "encryption_key": "hex32", "admin_password": "password"},
        admin=Admin("{admin_email}"), setup=True,
        closed_routes={"/auth/setup": "all", "/api/auth/setup": "all"},
    ),
    # Mail: SMTP 25, submissions 465, submission 587, IMAP 143 / 993, POP3S 995 (what the DNS SRV records name).
    "stalwart": Profile(
        volumes={"app-data": "/opt/stalwart-mail"},
        secrets={"admin_password": "password", "dkim_private_key": "dkim"},
        admin=Admin(),
        public_ports=(25, 143, 465, 587, 993, 995),
        config_dir="/opt/stalwart-mail/etc",
        config_files=("config.toml",),
    ),
    "odoo": Profile(
        env={"HOST": "{db}", "USER": "{db_user}", "PASSWORD": "{db_password}"},
        volumes={"app-data": "/var/lib/odoo"},
        # One database, created and initialised by the server itself at its first start; no database manager (it
        # lets the first visitor create, drop or restore databases).
        # ($$: compose would read "$ " as interpolation.)
        command="--database={db_name} --db-filter=^{db_name}$$ --no-database-list --without-demo=all",
        secrets={"admin_password": "password", "agent_password": "password"},
        admin=Admin("{admin_email}"), setup=True,
        closed_routes={"/web/database": "all"},
        agent_secrets={"odoo_agent_password": "{agent_password}"},
        max_body="200m",
    ),
    "keycloak": Profile(
        env={
            "KC_DB": "postgres", "KC_DB_URL": "jdbc:postgresql://{db}:5432/{db_name}", "KC_DB_USERNAME": "{db_user}",
            "KC_DB_PASSWORD": "{db_password}", "KC_HOSTNAME": "{url}", "KC_PROXY_HEADERS": "xforwarded",
            "KC_HTTP_ENABLED": "true", "KEYCLOAK_ADMIN": "admin", "KEYCLOAK_ADMIN_PASSWORD": "{admin_password}",
        },
        secrets={"admin_password": "password"},
        admin=Admin(),
        command="start --optimized",
    ),
    "listmonk": Profile(
        env={
            "LISTMONK_app__address": "0.0.0.0:9000", "LISTMONK_app__root_url": "{url}",
            "LISTMONK_db__host": "{db}", "LISTMONK_db__port": "5432", "LISTMONK_db__user": "{db_user}",
            "LISTMONK_db__password": "{db_password}", "LISTMONK_db__database": "{db_name}",
            "LISTMONK_db__ssl_mode": "disable",
            # v3 guards the whole app with these (its image's config.toml says listmonk/listmonk); v4 creates its
            # first user from LISTMONK_ADMIN_*.
            "LISTMONK_app__admin_username": "admin", "LISTMONK_app__admin_password": "{admin_password}",
            "LISTMONK_ADMIN_USER": "admin", "LISTMONK_ADMIN_PASSWORD": "{admin_password}",
        },
        secrets={"admin_password": "password"},
        admin=Admin(),
        command="sh -c './listmonk --install --idempotent --yes && exec ./listmonk'",
    ),
    "nocodb": Profile(
        # NC_ADMIN_EMAIL/NC_ADMIN_PASSWORD create (or update) the super admin at every start.
        env={"NC_AUTH_JWT_SECRET": "{jwt_secret}", "NC_PUBLIC_URL": "{url}", "NC_ADMIN_EMAIL": "{admin_email}",
             "NC_ADMIN_PASSWORD": "{admin_password}", "NC_DISABLE_TELE": "true"},
        volumes={"app-data": "/usr/app/data"},
        secrets={"jwt_secret": "token", "admin_password": "password"},
        admin=Admin("{admin_email}"), setup=True,  # setup: the agent's API token (nocodb_api_token)
    ),
    "umami": Profile(
        env={"DATABASE_URL": "postgresql://{db_user}:{db_password}@{db}:5432/{db_name}", "APP_SECRET": "{app_secret}"},
        secrets={"app_secret": "token", "admin_password": "password"},
        # setup: changes the image's admin/umami and signs in for the agent's token (umami_api_token).
        admin=Admin(), setup=True,
    ),
    "uptime_kuma": Profile(
        volumes={"app-data": "/app/data"},
        secrets={"admin_password": "password"},
        admin=Admin(), setup=True,  # no env for it: setup writes the user before anyone can reach /setup
        agent_secrets={"uptime_kuma_metrics_basic": "{admin_basic}"},  # /metrics takes the user's basic auth
    ),
    # Docker socket = root on the server: never public, and not handed to the customer (catalog admin_only). The
    # operator reaches it through an SSH tunnel to 127.0.0.1:9443; the agent through the Safety Wrapper.
    "portainer": Profile(
        volumes={"app-data": "/data"}, docker_socket=True, upstream_scheme="https",
        command="--admin-password-file=/run/letsbe/admin_password",
        secrets={"admin_password": "password"},
        config_dir="/run/letsbe", config_files=("admin_password",),
        setup=True,  # setup: the agent's API key (portainer_api_key)
        public=False,
    ),
    "activepieces": Profile(
        env={
            "AP_POSTGRES_HOST": "{db}", "AP_POSTGRES_PORT": "5432", "AP_POSTGRES_DATABASE": "{db_name}",
            "AP_POSTGRES_USERNAME": "{db_user}", "AP_POSTGRES_PASSWORD": "{db_password}",
            "AP_ENCRYPTION_KEY": "{encryption_key}", "AP_JWT_SECRET": "{jwt_secret}", "AP_FRONTEND_URL": "{url}",
            "AP_QUEUE_MODE": "MEMORY", "AP_EXECUTION_MODE": "UNSANDBOXED", "AP_TELEMETRY_ENABLED": "false",
        },
        secrets={"encryption_key": "hex32", "jwt_secret": "token", "admin_password": "password"},
        # setup: signs the owner up (Community Edition: later sign-ups need an invitation). It issues no API keys
        # (a platform feature of the paid edition), so activepieces_api_key is not provisioned.
        admin=Admin("{admin_email}"), setup=True,
    ),
    "bookstack": Profile(
        env={
            "APP_URL": "{url}", "APP_KEY": "{app_key}", "DB_HOST": "{db}", "DB_PORT": "3306",
            "DB_USERNAME": "{db_user}", "DB_PASSWORD": "{db_password}", "DB_DATABASE": "{db_name}",
            "PUID": "1000", "PGID": "1000",
        },
        volumes={"app-config": "/config"},
        secrets={"app_key": "laravel", "admin_password": "password", "token_id": "token", "token_secret": "token"},
        # setup: turns the image's admin@admin.com/password into the customer's login and adds the agent's API token.
        admin=Admin("{admin_email}"), setup=True,
        agent_secrets={"bookstack_token_id": "{token_id}", "bookstack_token_secret": "{token_secret}"},
        max_body="100m",
    ),
}  # fmt: skip


def profile(tool: str) -> Profile:
    return PROFILES.get(tool, Profile())
