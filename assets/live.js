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
  var live = { source: null, connected: null, lastNote: null };

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
      live.lastNote = note;
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

  /* A page's trigger store: changes when a kind it shows changed, at most once per
   * min_ms. A change inside the interval is kept and delivered at its end, so the last
   * change is never lost, only postponed. */
  var latest = {}; /* trigger id -> its current data */
  var timers = {}; /* trigger id -> pending timer */

  function fresh(note, trigger) {
    var versions = (note && note.versions) || {};
    var seen = trigger.seen || {};
    var next = {};
    var changed = false;
    (trigger.kinds || []).forEach(function (kind) {
      var v = versions[kind] || 0;
      next[kind] = Math.max(v, seen[kind] || 0);
      if (v > (seen[kind] || 0)) {
        changed = true;
      }
    });
    return changed ? next : null;
  }

  /* server_ms: when the server sent the note that fired the trigger. The server shares
   * one refresh between viewers and gives this one a result computed after that moment
   * (dashboards/shared.py), so the data the note announced are in it. */
  function fire(trigger, seen, note) {
    var out = Object.assign({}, trigger, {
      seen: seen,
      at: Date.now(),
      n: (trigger.n || 0) + 1,
      server_ms: (note && note.server_ms) || null,
    });
    latest[trigger.id] = out;
    return out;
  }

  function filter(note, trigger) {
    var noUpdate = window.dash_clientside.no_update;
    if (!note || !trigger || !trigger.id) {
      return noUpdate;
    }
    /* The page may have been left and opened again: its store starts afresh. */
    var current = latest[trigger.id] && latest[trigger.id].n >= (trigger.n || 0) ? latest[trigger.id] : trigger;
    var seen = fresh(note, current);
    if (!seen) {
      return noUpdate;
    }
    var wait = (current.at || 0) + (current.min_ms || 0) - Date.now();
    if (wait <= 0) {
      return fire(current, seen, note);
    }
    if (!timers[trigger.id]) {
      timers[trigger.id] = window.setTimeout(function () {
        delete timers[trigger.id];
        var again = fresh(live.lastNote, latest[trigger.id] || current);
        if (again) {
          put(trigger.id, fire(latest[trigger.id] || current, again, live.lastNote));
        }
      }, wait);
    }
    return noUpdate;
  }

  window.cityopsLive = { state: live };
  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.cityops_live = {
    /* Called once by the shell when the layout is ready: open the stream. */
    start: function () {
      if (!live.source) {
        open();
      }
      return window.dash_clientside.no_update;
    },
    filter: filter,
  };
})();
