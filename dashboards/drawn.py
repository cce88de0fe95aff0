"""What a browser already shows: signatures of a page's outputs, to send only what changed.

A page keeps the signatures of what it last sent in a ``dcc.Store`` of its layout (so a
new page load starts empty and gets everything); a refresh compares each output's
signature with the stored one and answers ``dash.no_update`` for those that hold. At
city volume this is most of a refresh's payload and of the browser's redraw work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import dash


def signature(*parts: Iterable[Any]) -> str:
    """A short digest of the items' ``repr``: equal for equal content, in order."""
    digest = hashlib.sha1(usedforsecurity=False)
    for part in parts:
        for item in part:
            digest.update(repr(item).encode())
            digest.update(b"\n")
    return digest.hexdigest()[:16]


def changed_only(
    outputs: Mapping[str, Any], signatures: Mapping[str, str], drawn: Mapping[str, str] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """``outputs`` with ``dash.no_update`` for each one whose signature equals the drawn
    one, and the signatures now drawn (store them for the next refresh)."""
    drawn = drawn or {}
    sent = {
        name: dash.no_update if name in signatures and drawn.get(name) == signatures[name] else value
        for name, value in outputs.items()
    }
    return sent, dict(signatures)


def content_signature(value: Any) -> str:
    """The signature of a component tree (or any Dash output) as it would be sent: its JSON."""
    from plotly.io.json import to_json_plotly

    return signature([to_json_plotly(value)])


def build_changed(
    builders: Mapping[str, Callable[[], Any]], signatures: Mapping[str, str], drawn: Mapping[str, str] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """As :func:`changed_only` for outputs signed by their data: each builder is called only
    for an output that is sent (building a table of hundreds of rows costs as much as
    sending it)."""
    drawn = drawn or {}
    sent = {
        name: dash.no_update if drawn.get(name) == signatures.get(name) else build()
        for name, build in builders.items()
    }
    return sent, dict(signatures)
