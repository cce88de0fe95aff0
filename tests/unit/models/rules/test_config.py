"""Loading the rule file: the default set, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.rules import RuleFileError, load_rules, parse_rules
from models.rules.config import DOMAINS, SEVERITIES, template_fields

from .support import rule_toml

THRESHOLD = 'device_types = ["water_level"]\nmetric = "level"\nvalue = 5.0\n'


def test_the_default_rule_set_covers_every_domain_and_kind() -> None:
    rules = load_rules()
    assert len(rules) >= 25
    assert {r.domain for r in rules.rules} == set(DOMAINS)
    assert {r.kind for r in rules.rules} == {
        "threshold",
        "rate",
        "standard",
        "staleness",
        "video",
        "correlation",
        "surge",
    }
    assert {r.severity for r in rules.rules} <= set(SEVERITIES)
    ids = [r.id for r in rules.rules]
    assert len(ids) == len(set(ids))
    for expected in (
        "water_level_warning",
        "water_level_rise",
        "rain_heavy",
        "video_smoke_fire",
        "video_crowd",
        "flood_compound",
        "aqi_heavy",
        "water_below_target",
        "noise_night",
        "hotline_surge",
        "device_offline",
    ):
        assert expected in ids
    assert rules.by_id("video_smoke_fire").severity == "critical"
    assert rules.by_id("video_smoke_fire").min_confidence == 0.8
    assert rules.by_id("aqi_heavy").min_level == 5


def test_every_default_title_and_message_is_chinese_first() -> None:
    for r in load_rules().rules:
        assert "\u4e00" <= r.name[0] <= "\u9fff" or r.name[0].isdigit(), r.id
        assert any("\u4e00" <= ch <= "\u9fff" for ch in r.title + r.message), r.id


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (THRESHOLD + "colour = 'red'\n", "rule 'rule_a': colour: Extra inputs are not permitted"),
        (
            'device_types = ["water_level"]\nmetric = "level"\n',
            "rule 'rule_a': give value, value_prop or both",
        ),
        ('device_types = ["water_level"]\nmetric = "depth"\nvalue = 1.0\n', "metric 'depth' is not a metric"),
        ('device_types = ["lava"]\nmetric = "level"\nvalue = 1.0\n', "rule 'rule_a': device_types.0"),
        (THRESHOLD + "min_duration_s = -1\n", "rule 'rule_a': min_duration_s: Input should be greater than"),
        (THRESHOLD + "hysteresis = 'a bit'\n", "rule 'rule_a': hysteresis: Input should be a valid number"),
    ],
)
def test_a_bad_rule_names_the_rule_and_the_field(body: str, expected: str) -> None:
    with pytest.raises(RuleFileError) as err:
        parse_rules(rule_toml("threshold", body), source="rules.toml")
    assert str(err.value).startswith("rules.toml: ")
    assert expected in str(err.value)


def test_unknown_kind_domain_and_severity_are_refused() -> None:
    with pytest.raises(RuleFileError, match=r"rule 'rule_a'.*kind"):
        parse_rules(rule_toml("magic", THRESHOLD))
    with pytest.raises(RuleFileError, match="rule 'rule_a': domain"):
        parse_rules(rule_toml("threshold", THRESHOLD, domain="weather"))
    with pytest.raises(RuleFileError, match="rule 'rule_a': severity"):
        parse_rules(rule_toml("threshold", THRESHOLD, severity="red"))


def test_templates_may_only_use_the_placeholders_of_their_kind() -> None:
    with pytest.raises(RuleFileError, match=r"rule 'rule_a': title: unknown placeholder \{count\}"):
        parse_rules(rule_toml("threshold", THRESHOLD, title="{count}次"))
    assert "count" in template_fields("video")


def test_duplicate_ids_empty_files_and_bad_toml_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="rule 'rule_a': duplicate id"):
        parse_rules(rule_toml("threshold", THRESHOLD) + rule_toml("threshold", THRESHOLD))
    with pytest.raises(RuleFileError, match="no rules"):
        parse_rules("version = 1\n")
    with pytest.raises(RuleFileError, match="not valid TOML"):
        parse_rules("[[rule]\n")
    with pytest.raises(RuleFileError, match="unknown top-level"):
        parse_rules("rules = []\n")
    with pytest.raises(RuleFileError, match="cannot read"):
        load_rules(tmp_path / "missing.toml")


def test_kind_specific_checks() -> None:
    corr = (
        "window_s = 600\nmin_signals = 3\n"
        '[[rule.signals]]\nname = "a"\nlabel = "甲"\nsource = "ticket"\ncategories = ["x"]\n'
    )
    with pytest.raises(RuleFileError, match="signals"):
        parse_rules(rule_toml("correlation", corr))
    standard = 'check = "aqi_level"\ndevice_types = ["noise"]\nmin_level = 5\n'
    with pytest.raises(RuleFileError, match="applies to device_types"):
        parse_rules(rule_toml("standard", standard))


def test_disabled_rules_are_validated_but_not_loaded() -> None:
    rules = parse_rules(rule_toml("threshold", THRESHOLD + "enabled = false\n"))
    assert len(rules) == 0
    with pytest.raises(RuleFileError):
        parse_rules(rule_toml("threshold", "enabled = false\n"))
