/* The district page (/districts/<code>): plotly.js is fetched from the page's first moment.
 *
 * Dash's graph asks for plotly.js (4.8 MB) only once the page's layout has arrived and a
 * graph is on it: two round trips late, and then beside the page's first refresh, which
 * the server is computing at the same time. A preload hint starts the download with the
 * page; the graph's own script tag then finds it fetched and evaluates it at once. The
 * URL and request mode are the graph's (dash-renderer's window._dashPlotlyJSURL with the
 * app's path prefix, a plain script tag): otherwise the browser would fetch it twice.
 * Only this page asks for it so far; the other map pages would gain the same when opened
 * directly.
 */
(function () {
  "use strict";
  if (!/\/districts\/[^/]+\/?$/.test(window.location.pathname)) {
    return;
  }
  var prefix = "/";
  try {
    prefix = JSON.parse(document.getElementById("_dash-config").textContent).requests_pathname_prefix || "/";
  } catch (err) {
    /* no readable config: the app is served at the root */
  }
  var link = document.createElement("link");
  link.rel = "preload";
  link.as = "script";
  link.href = prefix + "_dash-component-suites/plotly/package_data/plotly.min.js";
  document.head.appendChild(link);
})();
