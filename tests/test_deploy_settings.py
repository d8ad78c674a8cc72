"""Deployment files vs ``Settings``: every file parses, every ``FOLIO_*`` name
is a settings field, compose and k8s settings validate and keep secrets secret.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import SecretStr

from folio.settings import Settings
from tests.deploy_support import (
    ALERTS,
    COMPOSE,
    DASHBOARD,
    DOCKERFILE,
    FOLIO_ENV_NAME,
    K8S_FILES,
    LOCATION_SETTINGS,
    compose_folio_services,
    compose_services,
    deploy_files,
    env_dict,
    interpolate,
    k8s_settings_env,
    load_yaml_docs,
    secret_settings,
    setting_for_env,
    settings_from,
    top_setting,
)


def test_every_yaml_and_json_file_parses() -> None:
    yaml_files = deploy_files(".yaml", ".yml")
    json_files = deploy_files(".json")
    assert COMPOSE in yaml_files and ALERTS in yaml_files and DASHBOARD in json_files
    assert len(K8S_FILES) >= 4
    for path in yaml_files:
        docs = load_yaml_docs(path)
        assert docs and all(isinstance(doc, dict) for doc in docs), path
    for path in json_files:
        assert isinstance(json.loads(path.read_text()), dict), path


# --- FOLIO_* settings ----------------------------------------------------------


def files_with_settings() -> list[Path]:
    return [COMPOSE, DOCKERFILE, *K8S_FILES]


def test_every_folio_env_var_is_a_settings_field() -> None:
    used = {
        (path.name, name)
        for path in files_with_settings()
        for name in FOLIO_ENV_NAME.findall(path.read_text())
    }
    assert len({name for _, name in used}) >= 8
    unknown = sorted(f"{name} ({file})" for file, name in used if setting_for_env(name) is None)
    assert not unknown, f"not fields of folio.settings.Settings: {unknown}"


def test_setting_name_mapping_rejects_what_settings_ignores() -> None:
    # Settings has extra="ignore": a misspelt FOLIO_ variable is silently
    # dropped at run time, so this mapping is the only guard.
    assert setting_for_env("FOLIO_TOPICS__TICKS") == ("topics", "ticks")
    assert setting_for_env("FOLIO_KAFKA_CONFIG__SASL_MECHANISM") is not None
    assert setting_for_env("FOLIO_TOPICS__NOPE") is None
    assert setting_for_env("FOLIO_REDIS_URL__X") is None
    assert setting_for_env("FOLIO_REDIS_ULR") is None


def check_deployed_settings(settings: Settings) -> None:
    for name in LOCATION_SETTINGS:
        value = getattr(settings, name)
        assert value is not None, f"{name} is not set"
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        assert "127.0.0.1" not in text and "localhost" not in text, f"{name}={text}"
    # Several processes share ClickHouse: it must be a server, not chDB.
    assert settings.clickhouse_url().startswith(("http://", "https://"))
    assert settings.metrics_host == "0.0.0.0"
    assert settings.fanout_host == "0.0.0.0"


def test_compose_settings_validate_and_point_at_the_services() -> None:
    folio_services = compose_folio_services()
    assert set(folio_services) >= {"migrate", "flow", "fanout"}
    for name, service in folio_services.items():
        env = {k: interpolate(v) for k, v in env_dict(service.get("environment")).items()}
        settings = settings_from(env)
        check_deployed_settings(settings)
        assert settings.kafka_bootstrap.split(":")[0] in compose_services(), name


def test_k8s_settings_validate_and_secrets_stay_in_the_secret() -> None:
    config, secret = k8s_settings_env()
    check_deployed_settings(settings_from({**config, **secret}))
    secrets = secret_settings()
    assert {"redis_url", "postgres_dsn", "jwt_secret"} <= secrets
    in_config = {top_setting(name) for name in config}
    in_secret = {top_setting(name) for name in secret}
    assert not in_config & secrets, f"secret settings in the ConfigMap: {in_config & secrets}"
    assert in_secret <= secrets, f"plain settings in the Secret: {in_secret - secrets}"
    # Compose and Kubernetes configure the same settings.
    compose_env = env_dict(compose_services()["flow"]["environment"])
    assert set(compose_env) == set(config) | set(secret)


# --- compose -------------------------------------------------------------------
