"""Configuration: defaults, parsing, and one clear line for every bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from models.config import VARIABLES, ConfigError, load_settings

README = Path(__file__).resolve().parents[3] / "README.md"


def test_no_variables_means_the_embedded_default() -> None:
    s = load_settings({})
    assert s.embedded_mqtt and s.embedded_redis and s.embedded_database
    assert (s.host, s.port, s.topic_prefix) == ("127.0.0.1", 8050, "cityops/v1")
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.effective_database_url.endswith("/var/cityops.sqlite3")


def test_real_service_urls_are_parsed() -> None:
    s = load_settings(
        {
            "CITYOPS_MQTT_URL": "mqtt://ingest:s3cret@broker.intranet:1884",
            "CITYOPS_REDIS_URL": "redis://redis:6379/2",
            "CITYOPS_DATABASE_URL": "postgresql://cityops@db:5432/cityops",
            "CITYOPS_PORT": "9000",
        }
    )
    assert s.mqtt is not None
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.username, s.mqtt.password) == (
        "broker.intranet",
        1884,
        "ingest",
        "s3cret",
    )
    assert "s3cret" not in str(s.mqtt) and "s3cret" not in repr(s)
    assert s.database_url == "postgresql+psycopg://cityops@db:5432/cityops"
    assert s.redis_url == "redis://redis:6379/2"
    assert s.port == 9000


def test_mqtts_defaults_to_port_8883() -> None:
    s = load_settings({"CITYOPS_MQTT_URL": "mqtts://broker"})
    assert s.mqtt is not None and s.mqtt.port == 8883


def test_blank_values_count_as_unset() -> None:
    assert load_settings({"CITYOPS_REDIS_URL": "  "}).embedded_redis


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CITYOPS_PORT", "70000", "CITYOPS_PORT: must be an integer between 1 and 65535, got '70000'"),
        ("CITYOPS_PORT", "http", "CITYOPS_PORT: must be an integer between 1 and 65535, got 'http'"),
        ("CITYOPS_PORT", "0", "CITYOPS_PORT: must be an integer"),
        ("CITYOPS_MQTT_URL", "broker:1883", "CITYOPS_MQTT_URL: must start with"),
        ("CITYOPS_MQTT_URL", "mqtt://broker:99999", "CITYOPS_MQTT_URL: has a port that is not a number"),
        ("CITYOPS_MQTT_URL", "mqtt://", "CITYOPS_MQTT_URL: has no host"),
        ("CITYOPS_REDIS_URL", "http://redis", "CITYOPS_REDIS_URL: must start with"),
        ("CITYOPS_DATABASE_URL", "mysql://db/x", "CITYOPS_DATABASE_URL: must start with"),
        ("CITYOPS_DATABASE_URL", "postgresql://db", "CITYOPS_DATABASE_URL: names no database"),
        ("CITYOPS_DATABASE_URL", "sqlite://", "CITYOPS_DATABASE_URL: a sqlite URL needs a file path"),
        ("CITYOPS_SECRET_KEY", "short", "CITYOPS_SECRET_KEY: must be at least 32"),
        ("CITYOPS_TOPIC_PREFIX", "city/#", "CITYOPS_TOPIC_PREFIX: must be topic levels"),
        ("CITYOPS_LOG_LEVEL", "chatty", "CITYOPS_LOG_LEVEL: must be one of"),
        ("CITYOPS_TILE_URL", "http://tiles/x.png", "CITYOPS_TILE_URL: must be an http(s) URL with"),
        ("CITYOPS_DATABSE_URL", "sqlite:///x.db", "CITYOPS_DATABSE_URL: unknown setting"),
    ],
)
def test_bad_values_give_one_line_naming_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({variable: value})
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message
    assert info.value.variable == variable


def test_password_never_appears_in_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"CITYOPS_MQTT_URL": "mqtt://u:topsecret@broker:70000"})
    assert "topsecret" not in str(info.value)
    assert "***" in str(info.value)


def test_generated_secret_is_kept_private_and_stable(tmp_path: Path) -> None:
    s = load_settings({"CITYOPS_DATA_DIR": str(tmp_path)})
    first = s.session_secret()
    assert len(first) >= 32
    assert s.session_secret() == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"`(CITYOPS_[A-Z0-9_]+)`", text))
    assert set(VARIABLES) <= documented, sorted(set(VARIABLES) - documented)


def test_alert_sla_defaults_and_overrides() -> None:
    from datetime import timedelta

    assert load_settings({}).alert_sla == {
        "critical": timedelta(minutes=2),
        "major": timedelta(minutes=10),
        "minor": timedelta(minutes=30),
        "info": None,
    }
    s = load_settings({"CITYOPS_ALERT_SLA": "critical=60, minor=0"})
    assert s.alert_sla["critical"] == timedelta(seconds=60)
    assert s.alert_sla["minor"] is None, "0 means never escalates"
    assert s.alert_sla["major"] == timedelta(minutes=10), "unnamed severities keep their default"
    for bad in ("urgent=60", "critical", "critical=-5", "critical=soon"):
        with pytest.raises(ConfigError) as info:
            load_settings({"CITYOPS_ALERT_SLA": bad})
        assert str(info.value).startswith("CITYOPS_ALERT_SLA: ")


def test_rules_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CITYOPS_RULES_FILE: names no readable file"):
        load_settings({"CITYOPS_RULES_FILE": str(tmp_path / "missing.toml")})
    rules = tmp_path / "rules.toml"
    rules.write_text("", encoding="utf-8")
    assert load_settings({"CITYOPS_RULES_FILE": str(rules)}).rules_file == rules


def test_the_feed_silence_limit_is_bounded() -> None:
    assert load_settings({}).feed_silent_after.total_seconds() == 120
    assert load_settings({"CITYOPS_FEED_SILENT_AFTER_S": "5"}).feed_silent_after.total_seconds() == 5
    for bad in ("4", "3601", "soon"):
        with pytest.raises(ConfigError) as refused:
            load_settings({"CITYOPS_FEED_SILENT_AFTER_S": bad})
        assert refused.value.variable == "CITYOPS_FEED_SILENT_AFTER_S"
