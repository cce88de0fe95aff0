"""assets/cityops-district.js: a district page asks for plotly.js from its first moment, at
the address Dash's graph will load it from (else the browser would fetch 4.8 MB twice)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import dash

from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "assets" / "cityops-district.js"

#: Runs the asset against a minimal page (path, Dash config) per case; prints the hints added.
_NODE_RUN = r"""
const fs = require("fs");
const source = fs.readFileSync(process.argv[1], "utf8");
const cases = JSON.parse(fs.readFileSync(0, "utf8"));
const out = cases.map(([path, config]) => {
  const added = [];
  const document = {
    getElementById: (id) => (id === "_dash-config" && config !== null ? { textContent: config } : null),
    createElement: (tag) => ({ tag: tag }),
    head: { appendChild: (el) => added.push([el.tag, el.rel, el.as, el.href]) },
  };
  new Function("window", "document", source)({ location: { pathname: path } }, document);
  return added;
});
process.stdout.write(JSON.stringify(out));
"""


def run_asset(cases: list[tuple[str, str | None]]) -> list[list[list[str]]]:
    if shutil.which("node") is None:  # under CI=true a failure: make test installs nodejs
        service_missing("Node.js", "node is not installed; it runs the district page's browser script here")
    answer = subprocess.run(
        ["node", "-e", _NODE_RUN, str(SCRIPT)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(answer.stdout)


def test_a_district_page_preloads_plotly_where_the_graph_will_load_it() -> None:
    root = json.dumps({"requests_pathname_prefix": "/"})
    prefixed = json.dumps({"requests_pathname_prefix": "/cityops/"})
    plotly = "_dash-component-suites/plotly/package_data/plotly.min.js"
    assert run_asset(
        [
            ("/districts/511602", root),
            ("/cityops/districts/511681", prefixed),
            ("/districts/511602", None),
            ("/", root),
            ("/emergency", root),
            ("/districts/511602/other", root),
        ]
    ) == [
        [["link", "preload", "script", "/" + plotly]],
        [["link", "preload", "script", "/cityops/" + plotly]],
        [["link", "preload", "script", "/" + plotly]],
        [],
        [],
        [],
    ]


def test_the_preloaded_address_is_the_one_dash_renderer_gives_the_graph() -> None:
    # dash-renderer sets window._dashPlotlyJSURL to the prefix and this path when serving
    # locally (as the app does); an upgrade that moves it must move the preload too.
    bundle = Path(dash.__file__).parent / "dash-renderer" / "build" / "dash_renderer.min.js"
    renderer = bundle.read_text(encoding="utf-8")
    given = r'_dashPlotlyJSURL="".concat\(\w+\.requests_pathname_prefix,"([^"]+)"\)'
    assert re.findall(given, renderer) == ["_dash-component-suites/plotly/package_data/plotly.min.js"]
    assert "_dash-component-suites/plotly/package_data/plotly.min.js" in SCRIPT.read_text(encoding="utf-8")
