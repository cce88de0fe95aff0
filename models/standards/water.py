"""Surface water quality classes per GB 3838—2002 and the evaluation method 环办〔2011〕22号.

Source of the limits: GB 3838—2002 Table 1 (basic items), as transcribed in the
project's ``/work/shared/standards/water-and-noise.md``. Units are mg/L except pH
(dimensionless) and fecal coliform (个/L).

Method (single-factor, 单因子评价法)
    Each parameter gets the best class whose limit it meets; a value exactly on a limit
    belongs to that class; worse than V is 劣V. pH meets every class inside 6–9
    (inclusive) and is 劣V outside. Dissolved oxygen is "value ≥ limit", everything else
    "value ≤ limit". The sample's class is the worst of its evaluated parameters.

Which parameters count
    A setting: :data:`DEFAULT_EVALUATED` per body, changed per call with ``include=``
    (add) and ``exclude=`` (remove). The default leaves fecal coliform out everywhere
    and total nitrogen out for rivers, while TN counts for lakes and reservoirs, as the
    national practice is commonly described. Water temperature has no class limit and
    is not a parameter here. TN for a river, when included, is judged on the lake/
    reservoir column, the only TN column GB 3838 has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Literal

from models.standards._inputs import exact, exact_ratio

#: Classes from best to worst.
GRADES: tuple[str, ...] = ("I", "II", "III", "IV", "V", "劣V")
Grade = Literal["I", "II", "III", "IV", "V", "劣V"]
Body = Literal["river", "lake"]

#: Status words per class (环办〔2011〕22号): I–II 优, III 良好, IV 轻度污染, V 中度污染, 劣V 重度污染.
STATUS: Mapping[str, str] = MappingProxyType(
    {"I": "优", "II": "优", "III": "良好", "IV": "轻度污染", "V": "中度污染", "劣V": "重度污染"}
)

#: Accepted body names; a reservoir (水库) is judged like a lake (GB 3838 "湖、库").
BODIES: Mapping[str, Body] = MappingProxyType({"river": "river", "lake": "lake", "reservoir": "lake"})

_PH_RANGE = (Fraction(6), Fraction(9))
_PH_MAX = Fraction(14)


def _limits(*values: str) -> tuple[Fraction, ...]:
    # Written as strings so 0.00005 is that decimal exactly, not its binary neighbour.
    return tuple(Fraction(v) for v in values)


#: "≤ limit" parameters: the limits of classes I–V (GB 3838—2002 Table 1).
LIMITS: Mapping[str, tuple[Fraction, ...]] = MappingProxyType(
    {
        "codmn": _limits("2", "4", "6", "10", "15"),
        "cod": _limits("15", "15", "20", "30", "40"),
        "bod5": _limits("3", "3", "4", "6", "10"),
        "nh3n": _limits("0.15", "0.5", "1.0", "1.5", "2.0"),
        "tn": _limits("0.2", "0.5", "1.0", "1.5", "2.0"),
        "cu": _limits("0.01", "1.0", "1.0", "1.0", "1.0"),
        "zn": _limits("0.05", "1.0", "1.0", "2.0", "2.0"),
        "f": _limits("1.0", "1.0", "1.0", "1.5", "1.5"),
        "se": _limits("0.01", "0.01", "0.01", "0.02", "0.02"),
        "as": _limits("0.05", "0.05", "0.05", "0.1", "0.1"),
        "hg": _limits("0.00005", "0.00005", "0.0001", "0.001", "0.001"),
        "cd": _limits("0.001", "0.005", "0.005", "0.005", "0.01"),
        "cr6": _limits("0.01", "0.05", "0.05", "0.05", "0.1"),
        "pb": _limits("0.01", "0.01", "0.05", "0.05", "0.1"),
        "cn": _limits("0.005", "0.05", "0.2", "0.2", "0.2"),
        "phenol": _limits("0.002", "0.002", "0.005", "0.01", "0.1"),
        "oil": _limits("0.05", "0.05", "0.05", "0.5", "1.0"),
        "las": _limits("0.2", "0.2", "0.2", "0.3", "0.3"),
        "s2": _limits("0.05", "0.1", "0.2", "0.5", "1.0"),
        "fcoli": _limits("200", "2000", "10000", "20000", "40000"),
    }
)
#: Total phosphorus has one column for rivers and a stricter one for lakes and reservoirs.
TP_LIMITS: Mapping[Body, tuple[Fraction, ...]] = MappingProxyType(
    {
        "river": _limits("0.02", "0.1", "0.2", "0.3", "0.4"),
        "lake": _limits("0.01", "0.025", "0.05", "0.1", "0.2"),
    }
)
#: Dissolved oxygen is "value ≥ limit".
DO_LIMITS: tuple[Fraction, ...] = _limits("7.5", "6", "5", "3", "2")

#: Every parameter key, in the order of GB 3838—2002 Table 1.
PARAMETERS: tuple[str, ...] = (
    "ph",
    "do",
    "codmn",
    "cod",
    "bod5",
    "nh3n",
    "tp",
    "tn",
    "cu",
    "zn",
    "f",
    "se",
    "as",
    "hg",
    "cd",
    "cr6",
    "pb",
    "cn",
    "phenol",
    "oil",
    "las",
    "s2",
    "fcoli",
)

#: Parameters evaluated by default, per body (see the module docstring).
DEFAULT_EVALUATED: Mapping[Body, frozenset[str]] = MappingProxyType(
    {
        "river": frozenset(PARAMETERS) - {"tn", "fcoli"},
        "lake": frozenset(PARAMETERS) - {"fcoli"},
    }
)

#: A river or basin assessment needs at least this many sections (环办〔2011〕22号).
MIN_SECTIONS = 5


@dataclass(frozen=True)
class WaterResult:
    """Class of one sample or section.

    ``by_parameter`` gives every evaluated parameter's class, ``worst`` the parameters
    whose class equals the sample's class (they set it), ``ignored`` the known
    parameters that were given but not evaluated (e.g. TN of a river by default).
    """

    grade: Grade
    status: str
    worst: tuple[str, ...]
    by_parameter: dict[str, Grade] = field(hash=False)
    body: Body
    ignored: tuple[str, ...] = ()

    def exceeding(self, target: str = "III") -> tuple[str, ...]:
        """Parameters worse than ``target`` (超标项目 for a section whose target class is ``target``)."""
        limit = _grade_index(target, "target")
        return tuple(p for p, g in self.by_parameter.items() if GRADES.index(g) > limit)


@dataclass(frozen=True)
class RiverAssessment:
    """Water quality status of a river or basin from its sections' classes."""

    status: str
    sections: int
    share_good: float
    """Share of sections in classes I–III (0–1)."""
    share_worse_than_v: float
    """Share of sections in 劣V (0–1)."""
    counts: dict[str, int] = field(hash=False)


def parameter_grade(key: str, value: float, *, body: str = "river") -> Grade:
    """The class of one parameter value (single-factor)."""
    b = _body(body)
    if key not in PARAMETERS:
        raise ValueError(f"unknown water parameter {key!r}; expected one of {list(PARAMETERS)}")
    return _grade(key, exact(key, value), b)


def classify(
    values: Mapping[str, float | None],
    *,
    body: str = "river",
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> WaterResult:
    """Class of a sample by the single-factor method (GB 3838—2002, 环办〔2011〕22号).

    ``values`` maps parameter keys (:data:`PARAMETERS`) to concentrations; ``None``
    counts as not measured. ``body`` is ``"river"`` or ``"lake"`` (``"reservoir"`` is
    taken as a lake). ``include``/``exclude`` add to or remove from
    :data:`DEFAULT_EVALUATED`. Raises ``ValueError`` for unknown keys or bodies, bad
    values, and when no evaluated parameter was given.
    """
    b = _body(body)
    if not isinstance(values, Mapping):
        raise ValueError(f"values must be a mapping, got {type(values).__name__}")
    evaluated = DEFAULT_EVALUATED[b] if not include and not exclude else _evaluated_set(b, include, exclude)
    unknown = [k for k in values if k not in PARAMETERS]
    if unknown:
        raise ValueError(f"unknown water parameter(s) {unknown!r}; expected some of {list(PARAMETERS)}")
    given = {k: exact_ratio(k, v) for k, v in values.items() if v is not None}
    by_parameter: dict[str, Grade] = {
        k: _grade_of(k, given[k], b) for k in PARAMETERS if k in given and k in evaluated
    }
    if not by_parameter:
        raise ValueError(f"no evaluated parameter given; evaluated for a {b}: {sorted(evaluated)}")
    worst_index = max(GRADES.index(g) for g in by_parameter.values())
    grade: Grade = GRADES[worst_index]  # type: ignore[assignment]
    return WaterResult(
        grade=grade,
        status=STATUS[grade],
        worst=tuple(k for k, g in by_parameter.items() if g == grade),
        by_parameter=by_parameter,
        body=b,
        ignored=tuple(k for k in PARAMETERS if k in given and k not in evaluated),
    )


def status_of(grade: str) -> str:
    """Status word for one class: I–II 优, III 良好, IV 轻度污染, V 中度污染, 劣V 重度污染."""
    return STATUS[GRADES[_grade_index(grade, "grade")]]


def assess_river(grades: Sequence[str]) -> RiverAssessment:
    """Status of a river or basin from the classes of its sections (环办〔2011〕22号).

    With p = share of I–III sections and q = share of 劣V sections:
    p ≥ 90% 优; 75% ≤ p < 90% 良好; p < 75% and q < 20% 轻度污染;
    p < 75% and 20% ≤ q < 40% 中度污染; p < 75% and q ≥ 40% 重度污染.

    Needs at least :data:`MIN_SECTIONS` sections, else ``ValueError``: with fewer
    sections the method judges the river from its mean concentrations instead, i.e.
    :func:`classify` on the parameter means across sections.
    """
    if isinstance(grades, str | bytes) or not isinstance(grades, Sequence):
        raise ValueError("grades must be a sequence of class strings such as ['II', 'III', ...]")
    indexes = [_grade_index(g, f"grades[{i}]") for i, g in enumerate(grades)]
    n = len(indexes)
    if n < MIN_SECTIONS:
        raise ValueError(
            f"a river assessment needs at least {MIN_SECTIONS} sections, got {n}; "
            "classify the mean concentrations of the sections instead"
        )
    good = sum(1 for i in indexes if i <= GRADES.index("III"))
    bad = sum(1 for i in indexes if i == GRADES.index("劣V"))
    # Integer comparisons so 9 of 10 sections is exactly 90%, with no float rounding.
    if good * 10 >= n * 9:
        status = "优"
    elif good * 4 >= n * 3:
        status = "良好"
    elif bad * 5 < n:
        status = "轻度污染"
    elif bad * 5 < n * 2:
        status = "中度污染"
    else:
        status = "重度污染"
    return RiverAssessment(
        status=status,
        sections=n,
        share_good=good / n,
        share_worse_than_v=bad / n,
        counts={g: indexes.count(i) for i, g in enumerate(GRADES)},
    )


def evaluated_parameters(
    body: str = "river", *, include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> frozenset[str]:
    """The parameter set :func:`classify` evaluates for these settings."""
    b = _body(body)
    return DEFAULT_EVALUATED[b] if not include and not exclude else _evaluated_set(b, include, exclude)


# --- internals ------------------------------------------------------------------------------


#: (parameter, value as a ratio, body) → class: a station's readings keep to a few hundred
#: values per parameter, and comparing Fractions costs microseconds each (see _grade_of)
_GRADES_OF: dict[tuple[str, tuple[int, int], Body], Grade] = {}
#: entries kept before the memo starts over
GRADES_OF_MAX = 1 << 16


def _grade_of(key: str, ratio: tuple[int, int], body: Body) -> Grade:
    """:func:`_grade` of an exact ratio (:func:`exact_ratio`), remembered."""
    memo = (key, ratio, body)
    grade = _GRADES_OF.get(memo)
    if grade is None:
        grade = _grade(key, Fraction(*ratio), body)  # raises for an impossible value: not kept
        if len(_GRADES_OF) >= GRADES_OF_MAX:
            _GRADES_OF.clear()
        _GRADES_OF[memo] = grade
    return grade


def _grade(key: str, value: Fraction, body: Body) -> Grade:
    if key == "ph":
        if value > _PH_MAX:
            raise ValueError(f"ph must be within 0–14, got {float(value)}")
        return "I" if _PH_RANGE[0] <= value <= _PH_RANGE[1] else "劣V"
    if key == "do":
        for grade, limit in zip(GRADES, DO_LIMITS, strict=False):
            if value >= limit:
                return grade  # type: ignore[return-value]
        return "劣V"
    limits = TP_LIMITS[body] if key == "tp" else LIMITS[key]
    for grade, limit in zip(GRADES, limits, strict=False):
        if value <= limit:
            return grade  # type: ignore[return-value]
    return "劣V"


def _body(body: Any) -> Body:
    if not isinstance(body, str) or body not in BODIES:
        raise ValueError(f"body must be one of {sorted(BODIES)}, got {body!r}")
    return BODIES[body]


def _evaluated_set(body: Body, include: Iterable[str], exclude: Iterable[str]) -> frozenset[str]:
    inc, exc = _keys(include, "include"), _keys(exclude, "exclude")
    both = inc & exc
    if both:
        raise ValueError(f"parameter(s) {sorted(both)} both included and excluded")
    return (DEFAULT_EVALUATED[body] | inc) - exc


def _keys(keys: Any, name: str) -> frozenset[str]:
    if isinstance(keys, str | bytes):
        raise ValueError(f"{name} must be a collection of parameter keys, not the string {keys!r}")
    try:
        out = frozenset(keys)
    except TypeError:
        raise ValueError(f"{name} must be a collection of parameter keys, got {keys!r}") from None
    unknown = sorted(k for k in out if k not in PARAMETERS)
    if unknown:
        raise ValueError(f"unknown water parameter(s) {unknown} in {name}")
    return out


def _grade_index(grade: Any, name: str) -> int:
    if not isinstance(grade, str) or grade not in GRADES:
        raise ValueError(f"{name} must be one of {list(GRADES)}, got {grade!r}")
    return GRADES.index(grade)
