/* Server push for every page: one EventSource per browser tab.
 *
 * The server (dashboards/push.py) sends the versions of each kind of live data whenever
 * something changed, at most twice a second. Each event is written into the shell's
 * `live-updates` store, which page callbacks take as an Input, and the stream's health
 * into `live-connection`, which the shell shows when the server cannot be reached.
 * EventSource reconnects by itself; when the server answered with an error (stream
 * closed for good), a new one is opened after a pause, so a restarted web worker is
 * picked up without reloading the page.
 */
(function () {
  "use strict";
  var STREAM = "/api/live/updates";
  var REOPEN_MS = 3000;
  var live = { source: null, connected: null };

  function put(id, data) {
    var dc = window.dash_clientside;
    if (dc && dc.set_props) {
      try {
        dc.set_props(id, { data: data });
      } catch (err) {
        /* the store is not on this page (e.g. a bare error page): nothing to update */
      }
    }
  }

  function health(connected) {
    if (live.connected === connected) {
      return;
    }
    live.connected = connected;
    put("live-connection", { connected: connected, since_ms: Date.now() });
  }

  function open() {
    var source = new EventSource(STREAM);
    live.source = source;
    source.onopen = function () {
      health(true);
    };
    source.onmessage = function (event) {
      var note;
      try {
        note = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      note.received_ms = Date.now();
      health(true);
      put("live-updates", note);
    };
    source.onerror = function () {
      health(false);
      if (source.readyState === EventSource.CLOSED) {
        live.source = null;
        window.setTimeout(open, REOPEN_MS);
      }
    };
  }

  window.cityopsLive = {
    /* Called once by the shell's clientside callback when the layout is ready. */
    start: function () {
      if (!live.source) {
        open();
      }
      return window.dash_clientside.no_update;
    },
  };
})();
