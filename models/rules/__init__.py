"""Alert rules: rules as data (``default_rules.toml``), judged on every stored batch and on a tick.

- :mod:`~models.rules.config`: the rule file, validated strictly at start-up.
- :mod:`~models.rules.state`: the condition state machine (hysteresis, minimum duration,
  refresh, clear) shared by every kind.
- :mod:`~models.rules.engine`: turns batches and ticks into :class:`Draft` / :class:`Clear`
  decisions, keeping all memory in Redis.
- :mod:`~models.rules.sink`: applies decisions through ``models.alerts``; :class:`RuleRunner`
  is the ingest hook and tick.

Rule kinds: ``threshold`` (metric vs. a value or a device prop, hysteresis, minimum
duration), ``rate`` (least-squares slope over a window), ``standard`` (AQI level, water
class vs. the section's target, noise over the zone limit in a period, from the derived
values), ``staleness`` (silent for N × the reporting period), ``video`` (event types at a
confidence, counted per grid cell or camera), ``correlation`` (≥ N different signals in one
grid cell within a window) and ``surge`` (12345 tickets of one category in one district
above a baseline). Dedup keys are ``{rule_id}:{device_id}`` for device rules,
``{rule_id}:{grid_id}`` for video and correlation, ``{rule_id}:{district}:{category}`` for
surges.

Redis keys (all under ``cityops:rules:``; times are epoch seconds of reading time):

=====================================================  ======  ===========================================
key                                                    type    content
=====================================================  ======  ===========================================
``cityops:rules:state:{rule_id}:{subject}``            hash    condition state: ``since``, ``active``,
                                                               ``last``, ``emitted``, ``ev`` (JSON, the
                                                               newest readings); absent when idle
``cityops:rules:active:{rule_id}``                     set     subjects with an open alert from the rule
``cityops:rules:busy:{rule_id}``                       set     subjects whose condition is pending or open:
                                                               only these (and subjects whose sample
                                                               holds) have their state read
``cityops:rules:busy:ready``                           string  the busy sets are complete (filled once
                                                               from the state keys after an upgrade)
``cityops:rules:series:{rule_id}:{device_id}``         zset    rate rules: ``"{ts}:{value}"`` by ts, the
                                                               window only
``cityops:rules:window:{rule_id}:{subject}``           zset    video rules: events (JSON) by ts
``cityops:rules:corr:{rule_id}:grid:{grid_id}``        zset    correlation: local signals (JSON) by ts
``cityops:rules:corr:{rule_id}:district:{code}``       zset    correlation: areal signals (rain …) by ts
``cityops:rules:corr:{rule_id}:cells:{code}``          zset    grid cells with recent local signals
``cityops:rules:corr:{rule_id}:district_of``           hash    grid cell → district
``cityops:rules:surge:{rule_id}:{district}:{cat}``     zset    ticket ids in the window by ts
``cityops:rules:surge_hist:{rule_id}:{district}:{cat}`` hash   count per window bucket (``ts // window``)
                                                               and ``first`` bucket: the baseline
``cityops:rules:seen``                                 zset    device → epoch of its newest reading
``cityops:rules:devices``                              hash    device → JSON (type, district, grid,
                                                               position, ``report_period_s`` prop),
                                                               written when it changes and every 5 min
``cityops:rules:tick:{n}``                             string  claimed by the worker running tick ``n``
=====================================================  ======  ===========================================

Window keys expire an hour after their window; state keys a week after their last change.
"""

from models.rules.config import RuleFileError, RuleSet, load_rules, parse_rules
from models.rules.decisions import Clear, Decision, Draft
from models.rules.engine import RuleEngine
from models.rules.sink import AlertSink, RuleRunner

__all__ = [
    "AlertSink",
    "Clear",
    "Decision",
    "Draft",
    "RuleEngine",
    "RuleFileError",
    "RuleRunner",
    "RuleSet",
    "load_rules",
    "parse_rules",
]
