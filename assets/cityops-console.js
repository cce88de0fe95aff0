/* The duty officers' console (/alerts): SLA countdowns and alert ages tick in the browser.
 *
 * The server sends the queue table only when its rows change, not every second: each
 * ticking cell carries its instant, and the cell itself or the table around it the
 * catalogue's texts in the viewer's language, as data-* attributes (dashboards/console.py:
 * age_data, sla_data, countdown_texts); this script rewrites the cell's text and state
 * class once a second, as console.sla_status and console.duration_text would at that moment.
 *
 *   on the cell:
 *   data-since            epoch ms (UTC) an age counts from
 *   data-sla-due          epoch ms (UTC) of the deadline to acknowledge
 *   on the cell or an element around it:
 *   data-sla-due-soon-s   seconds left under which the countdown turns due_soon
 *   data-sla-ok, data-sla-due-soon, data-sla-overdue    templates with {left} / {over}
 *   data-duration-ms, data-duration-hms, data-duration-days    templates with {d} {h} {m} {s}
 *
 * Templates are the catalogue's Python format strings; the fields they use are {name}
 * and {name:02d} (tests/unit/dashboards/test_console.py keeps it so).
 *
 * "Now" is the server's clock: every queue refresh brings the server's time (console-live
 * "at_ms"). A refresh arrives after it was stamped (network, a result shared between
 * viewers up to a second old), so each arrival gives a difference that is at most the
 * true one: the largest of the recent ones is kept.
 */
(function () {
  "use strict";

  var TICK_MS = 1000;
  /* About ten seconds of refreshes: enough for one that came quickly, short enough to
   * follow the server's clock when it is stepped. */
  var SAMPLES = 8;
  var STATES = ["sla-ok", "sla-due_soon", "sla-overdue"];
  var samples = [];

  /* Python's str.format for the fields the catalogue's countdowns use: {n}, {n:02d}. */
  function format(template, values) {
    return String(template || "").replace(/\{(\w+)(?::(0?)(\d*)d)?\}/g, function (field, name, zero, width) {
      if (!Object.prototype.hasOwnProperty.call(values, name)) {
        return field;
      }
      var text = String(values[name]);
      var size = Number(width || 0);
      while (text.length < size) {
        text = (zero ? "0" : " ") + text;
      }
      return text;
    });
  }

  /* console.duration_text: m:ss, h:mm:ss, then days and hours; never negative. */
  function durationText(seconds, texts) {
    var total = Math.max(0, Math.trunc(seconds));
    var days = Math.floor(total / 86400);
    var rest = total % 86400;
    var hours = Math.floor(rest / 3600);
    rest %= 3600;
    var minutes = Math.floor(rest / 60);
    var secs = rest % 60;
    if (days) {
      return format(texts.getAttribute("data-duration-days"), { d: days, h: hours });
    }
    if (hours) {
      return format(texts.getAttribute("data-duration-hms"), { h: hours, m: minutes, s: secs });
    }
    return format(texts.getAttribute("data-duration-ms"), { m: minutes, s: secs });
  }

  /* console.sla_status's state and text at server time nowMs. */
  function slaStatus(cell, texts, nowMs) {
    var left = (Number(cell.getAttribute("data-sla-due")) - nowMs) / 1000;
    if (left <= 0) {
      var over = durationText(-left, texts);
      return { state: "overdue", text: format(texts.getAttribute("data-sla-overdue"), { over: over }) };
    }
    var state = left <= Number(texts.getAttribute("data-sla-due-soon-s")) ? "due_soon" : "ok";
    var template = texts.getAttribute(state === "ok" ? "data-sla-ok" : "data-sla-due-soon");
    return { state: state, text: format(template, { left: durationText(left, texts) }) };
  }

  /* One cell at server time nowMs; the DOM is touched only where something changed. */
  function render(cell, nowMs) {
    var texts = cell.closest("[data-duration-ms]");
    if (!texts) {
      return;
    }
    var text;
    if (cell.hasAttribute("data-sla-due")) {
      var status = slaStatus(cell, texts, nowMs);
      text = status.text;
      var wanted = "sla-" + status.state;
      if (!cell.classList.contains(wanted)) {
        STATES.forEach(function (name) {
          cell.classList.remove(name);
        });
        cell.classList.add(wanted);
      }
    } else if (cell.hasAttribute("data-since")) {
      text = durationText((nowMs - Number(cell.getAttribute("data-since"))) / 1000, texts);
    } else {
      return;
    }
    /* Text only, never markup. */
    if (cell.textContent !== text) {
      cell.textContent = text;
    }
  }

  function offsetMs() {
    return samples.length ? Math.max.apply(null, samples) : 0;
  }

  function serverNow() {
    return Date.now() + offsetMs();
  }

  /* The queue's ages and countdowns, and the detail's deadline. */
  var TICKING = "#console-queue [data-sla-due], #console-queue [data-since], #console-detail [data-sla-due]";

  function tick() {
    var cells = document.querySelectorAll(TICKING);
    if (!cells.length) {
      return;
    }
    var now = serverNow();
    for (var i = 0; i < cells.length; i++) {
      render(cells[i], now);
    }
  }

  window.setInterval(tick, TICK_MS);

  window.cityopsConsole = {
    format: format,
    render: render,
    tick: tick,
    serverNow: serverNow,
    offsetMs: offsetMs,
  };

  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.cityops = Object.assign(window.dash_clientside.cityops || {}, {
    // Each queue refresh: the server's time as it left, against this browser's clock.
    consoleClock: function (live) {
      if (live && typeof live.at_ms === "number") {
        samples.push(live.at_ms - Date.now());
        if (samples.length > SAMPLES) {
          samples.shift();
        }
        /* A redrawn table shows the server's text as rendered: bring it to now at once. */
        window.setTimeout(tick, 0);
      }
      return offsetMs();
    },
  });
})();
