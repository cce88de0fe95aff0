"""The interchange settings: Open311 API keys (secret), CAP sender, readiness lag threshold."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.config import DEFAULT_CAP_SENDER, ConfigError, load_settings


def test_defaults_refuse_open311_posts_and_name_a_stable_sender() -> None:
    settings = load_settings({})
    assert settings.open311_api_keys == frozenset()
    assert settings.cap_sender == DEFAULT_CAP_SENDER
    assert settings.ready_max_ingest_lag == timedelta(seconds=60)


def test_api_keys_are_a_comma_separated_secret() -> None:
    keys = "alpha-0123456789abcdef, beta-0123456789abcdef"
    settings = load_settings({"CITYOPS_OPEN311_API_KEYS": keys})
    assert settings.open311_api_keys == {"alpha-0123456789abcdef", "beta-0123456789abcdef"}
    assert "alpha" not in repr(settings)
    with pytest.raises(ConfigError) as info:
        load_settings({"CITYOPS_OPEN311_API_KEYS": "alpha-0123456789abcdef,short"})
    assert "CITYOPS_OPEN311_API_KEYS" in str(info.value)
    assert "alpha" not in str(info.value) and "short" not in str(info.value), "a key never reaches a message"


@pytest.mark.parametrize("sender", ["city ops", "a,b", "a<b", "a&b"])
def test_cap_sender_without_the_characters_cap_forbids(sender: str) -> None:
    with pytest.raises(ConfigError, match="CITYOPS_CAP_SENDER"):
        load_settings({"CITYOPS_CAP_SENDER": sender})
    assert load_settings({"CITYOPS_CAP_SENDER": "gov.cn.guangan.yjj"}).cap_sender == "gov.cn.guangan.yjj"


def test_readiness_lag_threshold() -> None:
    assert load_settings({"CITYOPS_READY_MAX_INGEST_LAG_S": "15"}).ready_max_ingest_lag == timedelta(
        seconds=15
    )
    with pytest.raises(ConfigError, match="CITYOPS_READY_MAX_INGEST_LAG_S"):
        load_settings({"CITYOPS_READY_MAX_INGEST_LAG_S": "-1"})
