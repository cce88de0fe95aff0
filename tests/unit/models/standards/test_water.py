"""Surface water classes per GB 3838—2002 and the 环办〔2011〕22号 evaluation rules."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

import pytest

from models.standards import water

GRADES = ("I", "II", "III", "IV", "V", "劣V")
# GB 3838—2002 Table 1, re-typed from the shared standard text: limits of classes I–V, "≤".
LE_LIMITS = {
    "codmn": ("2", "4", "6", "10", "15"),
    "cod": ("15", "15", "20", "30", "40"),
    "bod5": ("3", "3", "4", "6", "10"),
    "nh3n": ("0.15", "0.5", "1.0", "1.5", "2.0"),
    "tn": ("0.2", "0.5", "1.0", "1.5", "2.0"),
    "cu": ("0.01", "1.0", "1.0", "1.0", "1.0"),
    "zn": ("0.05", "1.0", "1.0", "2.0", "2.0"),
    "f": ("1.0", "1.0", "1.0", "1.5", "1.5"),
    "se": ("0.01", "0.01", "0.01", "0.02", "0.02"),
    "as": ("0.05", "0.05", "0.05", "0.1", "0.1"),
    "hg": ("0.00005", "0.00005", "0.0001", "0.001", "0.001"),
    "cd": ("0.001", "0.005", "0.005", "0.005", "0.01"),
    "cr6": ("0.01", "0.05", "0.05", "0.05", "0.1"),
    "pb": ("0.01", "0.01", "0.05", "0.05", "0.1"),
    "cn": ("0.005", "0.05", "0.2", "0.2", "0.2"),
    "phenol": ("0.002", "0.002", "0.005", "0.01", "0.1"),
    "oil": ("0.05", "0.05", "0.05", "0.5", "1.0"),
    "las": ("0.2", "0.2", "0.2", "0.3", "0.3"),
    "s2": ("0.05", "0.1", "0.2", "0.5", "1.0"),
    "fcoli": ("200", "2000", "10000", "20000", "40000"),
}
TP = {"river": ("0.02", "0.1", "0.2", "0.3", "0.4"), "lake": ("0.01", "0.025", "0.05", "0.1", "0.2")}
DO = ("7.5", "6", "5", "3", "2")
EPS = Decimal("0.000001")


def le_cases() -> list[tuple[str, str, float, str]]:
    """(body, key, value, expected class) on every limit and just past it."""
    out = []
    columns = [("river", k, v) for k, v in LE_LIMITS.items()] + [(b, "tp", v) for b, v in TP.items()]
    for body, key, limits in columns:
        for i, limit in enumerate(limits):
            # On a limit: the best class whose limit equals it (COD 15 is class I, not II).
            on = GRADES[limits.index(limit)]
            past = next((GRADES[j] for j in range(i, 5) if Decimal(limits[j]) > Decimal(limit)), "劣V")
            out.append((body, key, float(limit), on))
            out.append((body, key, float(Decimal(limit) + EPS), past))
    return out


@pytest.mark.parametrize(("body", "key", "value", "expected"), le_cases())
def test_every_limit_and_just_past_it(body: str, key: str, value: float, expected: str) -> None:
    assert water.parameter_grade(key, value, body=body) == expected
    r = water.classify({key: value}, body=body, include={key})
    assert r.by_parameter == {key: expected} and r.grade == expected


def test_hand_picked_boundaries() -> None:
    g = water.parameter_grade
    assert (g("codmn", 2), g("codmn", 2.01), g("codmn", 15), g("codmn", 15.01)) == ("I", "II", "V", "劣V")
    assert (g("cod", 15), g("cod", 15.1), g("nh3n", 1.0), g("nh3n", 1.01)) == ("I", "III", "III", "IV")
    assert (g("hg", 0.00005), g("hg", 0.00006), g("cu", 0.011)) == ("I", "III", "II")
    assert g("nh3n", 0) == "I"


@pytest.mark.parametrize("i", range(5))
def test_dissolved_oxygen_is_at_least_the_limit(i: int) -> None:
    limit = Decimal(DO[i])
    assert water.parameter_grade("do", float(limit)) == GRADES[i]
    assert water.parameter_grade("do", float(limit - EPS)) == GRADES[i + 1]


def test_dissolved_oxygen_extremes() -> None:
    assert water.parameter_grade("do", 20) == "I"
    assert water.parameter_grade("do", 0) == "劣V"


@pytest.mark.parametrize(
    ("ph", "expected"),
    [(6, "I"), (9, "I"), (7.2, "I"), (5.99, "劣V"), (9.01, "劣V"), (0, "劣V"), (14, "劣V")],
)
def test_ph_inside_6_to_9(ph: float, expected: str) -> None:
    assert water.parameter_grade("ph", ph) == expected
    r = water.classify({"ph": ph, "do": 8})
    assert r.grade == expected


def test_the_example_from_the_issue() -> None:
    w = water.classify({"do": 6.5, "codmn": 3.5, "nh3n": 0.8, "tp": 0.15}, body="river")
    assert w.by_parameter == {"do": "II", "codmn": "II", "nh3n": "III", "tp": "III"}
    assert (w.grade, w.status, w.worst) == ("III", "良好", ("nh3n", "tp"))
    assert w.exceeding() == () and w.exceeding(target="II") == ("nh3n", "tp")
    assert w.exceeding(target="I") == ("do", "codmn", "nh3n", "tp")


def test_lake_tp_is_stricter_than_river_tp() -> None:
    assert water.classify({"tp": 0.2}, body="river").grade == "III"
    assert water.classify({"tp": 0.2}, body="lake").grade == "V"
    assert water.classify({"tp": 0.05}, body="lake").grade == "III"
    assert water.classify({"tp": 0.051}, body="lake").grade == "IV"
    assert water.classify({"tp": 0.2}, body="reservoir").body == "lake"


def test_total_nitrogen_counts_for_lakes_only_by_default() -> None:
    sample = {"do": 8, "tn": 2.5}
    river = water.classify(sample, body="river")
    assert (river.grade, river.ignored, "tn" in river.by_parameter) == ("I", ("tn",), False)
    lake = water.classify(sample, body="lake")
    assert (lake.grade, lake.worst, lake.ignored) == ("劣V", ("tn",), ())
    assert water.classify(sample, body="river", include={"tn"}).grade == "劣V"
    assert water.classify(sample, body="lake", exclude=["tn"]).grade == "I"
    assert "tn" not in water.DEFAULT_EVALUATED["river"] and "tn" in water.DEFAULT_EVALUATED["lake"]
    assert "fcoli" not in water.DEFAULT_EVALUATED["river"] | water.DEFAULT_EVALUATED["lake"]
    assert water.evaluated_parameters("river", include={"fcoli"}) >= {"fcoli", "do", "ph"}


def test_worse_than_v_and_several_worst_parameters() -> None:
    w = water.classify({"do": 1.0, "nh3n": 2.5, "codmn": 3, "cod": 50})
    assert (w.grade, w.status, w.worst) == ("劣V", "重度污染", ("do", "cod", "nh3n"))
    assert w.exceeding("III") == ("do", "cod", "nh3n") and w.exceeding("V") == ("do", "cod", "nh3n")


@pytest.mark.parametrize(
    ("grade", "status"),
    [("I", "优"), ("II", "优"), ("III", "良好"), ("IV", "轻度污染"), ("V", "中度污染"), ("劣V", "重度污染")],
)
def test_status_words(grade: str, status: str) -> None:
    assert water.status_of(grade) == status


@pytest.mark.parametrize(
    ("value", "grade", "status"),
    [
        (1, "I", "优"),
        (3, "II", "优"),
        (5, "III", "良好"),
        (8, "IV", "轻度污染"),
        (12, "V", "中度污染"),
        (20, "劣V", "重度污染"),
    ],
)
def test_status_of_a_classified_sample(value: float, grade: str, status: str) -> None:
    w = water.classify({"codmn": value})
    assert (w.grade, w.status) == (grade, status)


def test_missing_values_are_left_out() -> None:
    w = water.classify({"do": 8, "nh3n": None})
    assert w.by_parameter == {"do": "I"}


def test_result_is_frozen_and_hashable() -> None:
    w = water.classify({"do": 8})
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.grade = "V"  # type: ignore[misc]
    assert hash(w) == hash(water.classify({"do": 8}))


# --- river / basin -----------------------------------------------------------------------------


def sections(good: int, v: int, worse: int) -> list[str]:
    return ["II"] * good + ["V"] * v + ["劣V"] * worse


@pytest.mark.parametrize(
    ("grades", "status"),
    [
        (sections(9, 1, 0), "优"),  # exactly 90%
        (sections(10, 0, 0), "优"),
        (sections(8, 2, 0), "良好"),  # 80%
        (sections(15, 5, 0), "良好"),  # exactly 75%
        (sections(14, 3, 3), "轻度污染"),  # 70%, 劣V 15%
        (sections(14, 2, 4), "中度污染"),  # 70%, 劣V exactly 20%
        (sections(2, 0, 3), "重度污染"),  # 40%, 劣V 60%
        (sections(3, 0, 2), "重度污染"),  # 60%, 劣V exactly 40%
        (sections(4, 2, 4), "重度污染"),  # 40%, 劣V exactly 40%
        (sections(6, 2, 2), "中度污染"),  # 60%, 劣V 20%
        (sections(11, 1, 8), "重度污染"),  # 55%, 劣V exactly 40%
        (sections(11, 2, 7), "中度污染"),  # 55%, 劣V 35%
        (["I", "II", "III", "IV", "IV"], "轻度污染"),  # 60%, no 劣V
        (sections(14, 6, 0), "轻度污染"),  # 70%, no 劣V
    ],
)
def test_river_assessment(grades: list[str], status: str) -> None:
    r = water.assess_river(grades)
    assert r.status == status and r.sections == len(grades)
    assert r.counts["劣V"] == grades.count("劣V") and sum(r.counts.values()) == len(grades)


def test_river_assessment_shares() -> None:
    r = water.assess_river(sections(14, 2, 4))
    assert (r.share_good, r.share_worse_than_v) == (0.7, 0.2)


def test_river_assessment_needs_five_sections() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        water.assess_river(["I", "II", "III", "IV"])
    with pytest.raises(ValueError, match="at least 5"):
        water.assess_river([])


@pytest.mark.parametrize(
    "bad", ["IIIIII", ["I", "II", "III", "IV", "VI"], ["I"] * 4 + ["Ⅲ"], ["I"] * 4 + [3], None]
)
def test_river_assessment_refuses_bad_grades(bad: object) -> None:
    with pytest.raises(ValueError):
        water.assess_river(bad)  # type: ignore[arg-type]


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, True, "0.5", object(), [1]])
def test_bad_values_raise(bad: object) -> None:
    with pytest.raises(ValueError, match="nh3n"):
        water.classify({"nh3n": bad, "do": 8})  # type: ignore[dict-item]


def test_other_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unknown water parameter"):
        water.classify({"temp": 20, "do": 8})
    with pytest.raises(ValueError, match="body"):
        water.classify({"do": 8}, body="sea")
    with pytest.raises(ValueError, match="body"):
        water.classify({"do": 8}, body=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no evaluated parameter"):
        water.classify({"tn": 1.0}, body="river")
    with pytest.raises(ValueError, match="no evaluated parameter"):
        water.classify({})
    with pytest.raises(ValueError, match="ph"):
        water.classify({"ph": 14.5})
    with pytest.raises(ValueError, match="mapping"):
        water.classify([("do", 8)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown water parameter"):
        water.classify({"do": 8}, include={"temp"})
    with pytest.raises(ValueError, match="both"):
        water.classify({"do": 8}, include={"tn"}, exclude={"tn"})
    with pytest.raises(ValueError, match="not the string"):
        water.classify({"do": 8}, include="tn")
    with pytest.raises(ValueError, match="collection"):
        water.classify({"do": 8}, include=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target"):
        water.classify({"do": 8}).exceeding(target="3")
    with pytest.raises(ValueError, match="unknown water parameter"):
        water.parameter_grade("temp", 20)
    with pytest.raises(ValueError, match="grade"):
        water.status_of("VI")


def test_a_remembered_class_is_the_class_and_impossible_values_are_never_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(water, "_GRADES_OF", {})
    for _ in range(2):  # computed, then remembered
        assert water.classify({"nh3n": 1.0, "do": 7.5}).grade == "III"
        assert water.classify({"tp": 0.05}, body="lake").grade == "III"
        assert water.classify({"tp": 0.05}, body="river").grade == "II"  # the body is part of the key
        with pytest.raises(ValueError, match="ph must be within 0–14"):
            water.classify({"ph": 14.5})
    assert ("ph", (29, 2), "river") not in water._GRADES_OF


def test_the_class_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(water, "GRADES_OF_MAX", 20)
    monkeypatch.setattr(water, "_GRADES_OF", {})
    for i in range(300):
        value = i / 100
        expected = water.parameter_grade("nh3n", value)
        assert water.classify({"nh3n": value}).grade == expected
    assert 0 < len(water._GRADES_OF) <= 20
