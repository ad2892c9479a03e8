"""Build provider clients from the hub's settings (in lifespan/worker scope, never at import)."""

from __future__ import annotations

from letsbe_contracts import Provider
from letsbe_hub.config import ServerSettings
from letsbe_hub.providers.base import ServerProvider
from letsbe_hub.providers.cloud_init import render_cloud_init
from letsbe_hub.providers.hetzner import HetznerConfig, HetznerProvider
from letsbe_hub.providers.http import RetryPolicy
from letsbe_hub.providers.netcup import NetcupConfig, NetcupProvider


def retry_policy(settings: ServerSettings) -> RetryPolicy:
    return RetryPolicy(
        attempts=settings.provider_retry_attempts,
        backoff_base=settings.provider_backoff_seconds,
        backoff_max=max(30.0, settings.provider_backoff_seconds),
    )


def hetzner_config(settings: ServerSettings) -> HetznerConfig | None:
    if settings.hetzner_api_token is None:
        return None
    return HetznerConfig(
        api_url=settings.hetzner_api_url,
        token=settings.hetzner_api_token.get_secret_value(),
        ssh_keys=tuple(settings.hetzner_ssh_keys),
        image=settings.hetzner_image,
        user_data=render_cloud_init(settings.server_ssh_user, settings.server_ssh_public_key),
        locations=dict(settings.hetzner_locations),
        server_types=tuple(settings.hetzner_server_types),
        timeout=settings.provider_timeout_seconds,
        retry=retry_policy(settings),
        poll_first=settings.provider_poll_first_seconds,
        poll_interval=settings.provider_poll_seconds,
        action_timeout=settings.provider_action_timeout_seconds,
    )


def build_hetzner(settings: ServerSettings) -> HetznerProvider | None:
    """None when no Hetzner token is configured (overflow disabled)."""
    config = hetzner_config(settings)
    return HetznerProvider(config) if config else None


def build_netcup(settings: ServerSettings) -> NetcupProvider | None:
    """None when no Netcup refresh token is configured."""
    if settings.netcup_refresh_token is None:
        return None
    return NetcupProvider(
        NetcupConfig(
            api_url=settings.netcup_api_url,
            token_url=settings.netcup_token_url,
            refresh_token=settings.netcup_refresh_token.get_secret_value(),
            timeout=settings.provider_timeout_seconds,
            retry=retry_policy(settings),
            poll_first=settings.provider_poll_first_seconds,
            poll_interval=settings.provider_poll_seconds,
            task_timeout=settings.provider_action_timeout_seconds,
        )
    )


def build(settings: ServerSettings, provider: Provider) -> ServerProvider | None:
    return build_hetzner(settings) if provider is Provider.HETZNER else build_netcup(settings)
