"""The agents' settings without pydantic: read from the environment as pydantic-settings reads them, every value
validated as strictly as the pydantic models did, and the settings every service has kept the same as the
platform's ServiceConfig (the hub's services read those with pydantic)."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from letsbe_agent.settings import AgentSettings, SecretStr, SettingsError, field_variables
from letsbe_platform.service_config import ServiceConfig
from letsbe_secrets_proxy.config import SecretsProxySettings


def test_the_settings_every_service_has_are_the_platforms():
    common = ServiceConfig.model_fields
    ours = AgentSettings.model_fields
    assert set(common) <= set(ours)
    for name, field in common.items():
        assert ours[name].default == field.default, name
        alias = field.validation_alias
        if alias is not None:
            assert field_variables(AgentSettings)[name] == tuple(a.upper() for a in alias.choices), name
        samples = {"port": 0, "bus_namespace": "Bad", "bus_replicas": 6, "shutdown_grace_seconds": -1,
                   "max_body_bytes": 1023, "max_header_bytes": 4095, "log_level": "LOUD"}
        if name in samples:  # the same constraint on both
            with pytest.raises(ValueError):
                ServiceConfig.model_validate({alias.choices[0] if alias else name: samples[name]})
            with pytest.raises(SettingsError, match=name):
                AgentSettings({}, **{name: samples[name]})


def test_values_from_the_environment_are_read_as_pydantic_settings_reads_them():
    env = {"LETSBE_SP_PORT": "8101", "letsbe_sp_log_json": "no", "LETSBE_SP_SENTINEL_KEY": "s3cret-sentinel",
           "LETSBE_SP_STATE_DIR": "/tmp/sp", "LETSBE_SP_BACKUP_CHECK_AT": "07:30", "LETSBE_SANDBOX": "1",
           "LETSBE_SP_REDACTION_POLICY": '{"jwt": "block"}', "LETSBE_SP_HUB_TIMEOUT_SECONDS": "2.5"}
    s = SecretsProxySettings(env)
    assert (s.port, s.log_json, s.state_dir, s.backup_check_at, s.sandbox) == (8101, False, Path("/tmp/sp"),
                                                                              time(7, 30), True)
    assert s.redaction_policy == {"jwt": "block"} and s.hub_timeout_seconds == 2.5
    assert s.sentinel_key == SecretStr("s3cret-sentinel")
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.sentinel_key)
    assert SecretsProxySettings(env, port=9000).port == 9000  # given values win over the environment


@pytest.mark.parametrize(("name", "value"), [
    ("port", "not-a-port"), ("port", "70000"), ("log_json", "maybe"), ("hub_timeout_seconds", "0"),
    ("heartbeat_jitter", "0.6"), ("docker_api_version", "1.43"), ("redaction_policy", '{"jwt": "shred"}'),
    ("redaction_policy", "not json"), ("max_request_bytes", "0"), ("backup_check_at", "25:00"),
    ("long_poll_seconds", "31"),
])
def test_an_invalid_value_names_the_field_and_not_the_value(name, value):
    with pytest.raises(SettingsError) as caught:
        SecretsProxySettings({f"LETSBE_SP_{name.upper()}": value})
    assert [f for f, _ in caught.value.errors] == [name]
    assert value not in str(caught.value) or value in ("0",)


def test_a_secret_of_the_wrong_type_is_refused_without_its_value():
    with pytest.raises(SettingsError, match="sentinel_key"):
        SecretsProxySettings({}, sentinel_key=12345)
