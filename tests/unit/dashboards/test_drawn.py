"""dashboards.drawn: a refresh sends an output only when it differs from the one on screen."""

from __future__ import annotations

from collections.abc import Callable

import dash
from dash import html

from dashboards.drawn import build_changed, changed_only, content_signature, signature


def test_signatures_follow_content_and_order() -> None:
    assert signature([1, "a"], [2.5]) == signature([1, "a"], [2.5])
    assert signature([1, "a"]) != signature(["a", 1])
    assert signature(["ab"], ["c"]) != signature(["a"], ["bc"])  # items are kept apart
    table = html.Table([html.Tr([html.Td("站1"), html.Td("42")])])
    same = html.Table([html.Tr([html.Td("站1"), html.Td("42")])])
    other = html.Table([html.Tr([html.Td("站1"), html.Td("43")])])
    assert content_signature(table) == content_signature(same) != content_signature(other)


def test_only_changed_outputs_are_sent() -> None:
    outputs = {"a": html.Div("1"), "b": html.Div("2")}
    signatures = {name: content_signature(value) for name, value in outputs.items()}

    first, drawn = changed_only(outputs, signatures, None)
    assert first == outputs and drawn == signatures

    again, drawn_again = changed_only(outputs, signatures, drawn)
    assert again == {"a": dash.no_update, "b": dash.no_update} and drawn_again == drawn

    changed = {**outputs, "b": html.Div("3")}
    sent, now_drawn = changed_only(changed, {k: content_signature(v) for k, v in changed.items()}, drawn)
    assert sent["a"] is dash.no_update and sent["b"] is changed["b"]
    assert now_drawn["a"] == drawn["a"] and now_drawn["b"] != drawn["b"]


def test_outputs_signed_by_their_data_are_built_only_when_sent() -> None:
    built: list[str] = []

    def table(name: str) -> Callable[[], html.Div]:
        def build() -> html.Div:
            built.append(name)
            return html.Div(name)

        return build

    signatures = {"queue": signature([("a", 1)]), "list": signature([("b", 2)])}
    first, drawn = build_changed({"queue": table("queue"), "list": table("list")}, signatures, None)
    assert built == ["queue", "list"] and first["queue"].children == "queue"

    built.clear()
    moved = {**signatures, "list": signature([("b", 3)])}
    sent, _ = build_changed({"queue": table("queue"), "list": table("list")}, moved, drawn)
    assert built == ["list"] and sent["queue"] is dash.no_update and sent["list"].children == "list"
