"""Colours and the offline map style of the dark control-room theme."""

from __future__ import annotations

from typing import Any

BACKGROUND = "#0b1320"
PANEL = "#111c2e"
GRID_LINE = "#1f2e47"
TEXT = "#d8e3f0"
MUTED = "#7f93ad"
ACCENT = "#3fa7ff"
ONLINE = "#34d399"
OFFLINE = "#64748b"

FONT_FAMILY = '"Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Microsoft YaHei", sans-serif'


def map_style(tile_url: str | None = None) -> dict[str, Any]:
    """A MapLibre style that loads nothing from the internet.

    Only a background layer, plus a raster layer when a self-hosted tile server is
    configured. No ``glyphs`` entry: maps draw no text, so no font is ever fetched.
    """
    style: dict[str, Any] = {
        "version": 8,
        "sources": {},
        "layers": [{"id": "background", "type": "background", "paint": {"background-color": BACKGROUND}}],
    }
    if tile_url:
        style["sources"]["intranet-tiles"] = {"type": "raster", "tiles": [tile_url], "tileSize": 256}
        style["layers"].append({"id": "intranet-tiles", "type": "raster", "source": "intranet-tiles"})
    return style


def figure_layout(**overrides: Any) -> dict[str, Any]:
    """Common Plotly layout for charts on dark panels."""
    layout: dict[str, Any] = {
        "paper_bgcolor": PANEL,
        "plot_bgcolor": PANEL,
        "font": {"family": FONT_FAMILY, "color": TEXT, "size": 13},
        "margin": {"l": 40, "r": 10, "t": 10, "b": 30},
        "xaxis": {"gridcolor": GRID_LINE, "zeroline": False},
        "yaxis": {"gridcolor": GRID_LINE, "zeroline": False},
        "showlegend": False,
    }
    layout.update(overrides)
    return layout
