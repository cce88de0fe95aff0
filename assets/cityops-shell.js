/* The shell in the browser: the clock, kiosk chrome and the lost-connection notice.
 *
 * Connection: the server cannot say it is unreachable, so the browser watches its own
 * requests. Every Dash callback request and a small ping (every few seconds, same origin)
 * go through fetch; a network failure or a gateway error (502/503/504) shows the notice
 * in #shell-conn, the next request that gets through clears it. Nothing to reload: Dash
 * keeps its timers running, so pages catch up by themselves once the server answers.
 */
(function () {
  "use strict";

  var state = { lost: false, pinging: false };

  function show() {
    var el = document.getElementById("shell-conn");
    if (!el) {
      return;
    }
    el.classList.toggle("lost", state.lost);
    el.textContent = state.lost ? el.getAttribute("data-lost") || "" : "";
  }

  function mark(lost) {
    if (state.lost !== lost) {
      state.lost = lost;
      show();
    }
  }

  function watched(url) {
    return url.indexOf("_dash-update-component") !== -1 || url.indexOf("/api/ping") !== -1;
  }

  var originalFetch = window.fetch.bind(window);
  window.fetch = function (input, init) {
    var url = typeof input === "string" ? input : (input && input.url) || "";
    var pending = originalFetch(input, init);
    if (!watched(String(url))) {
      return pending;
    }
    return pending
      .then(function (response) {
        mark(response.status === 502 || response.status === 503 || response.status === 504);
        if (response.status === 401 && !state.leaving) {
          // The session ended (idle, lifetime, logout elsewhere): back to the sign-in page,
          // which returns here afterwards.
          state.leaving = true;
          window.location.assign(
            "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search)
          );
        }
        if (response.status !== 200 || String(url).indexOf("_dash-update-component") === -1) {
          return response;
        }
        // Read a callback's reply here, whole: a server that dies mid-reply otherwise fails
        // Dash's own body read, which nothing catches, and leaves that callback pending
        // for good. Failing the request instead lets Dash treat it as "no response".
        return response.arrayBuffer().then(function (body) {
          return new Response(body, {
            status: response.status,
            statusText: response.statusText,
            headers: response.headers,
          });
        });
      })
      .catch(function (error) {
        mark(true);
        throw error;
      });
  };

  function ping() {
    var el = document.getElementById("shell-conn");
    var every = el ? Number(el.getAttribute("data-ping-ms")) || 5000 : 5000;
    if (el && !document.hidden && !state.pinging) {
      state.pinging = true;
      window
        .fetch(el.getAttribute("data-ping") || "/api/ping", { cache: "no-store" })
        .catch(function () {
          return null;
        })
        .then(function () {
          state.pinging = false;
        });
    }
    window.setTimeout(ping, every);
  }
  window.setTimeout(ping, 1000);

  window.cityopsConnection = {
    isLost: function () {
      return state.lost;
    },
  };

  function kiosk(pathname, search, locale) {
    var path = (pathname || "/").replace(/\/+$/, "") || "/";
    if ((locale.kiosk_paths || []).indexOf(path) !== -1) {
      return true;
    }
    var params = new URLSearchParams(search || "");
    var value = (params.get(locale.kiosk_query || "kiosk") || "").toLowerCase();
    return value === "1" || value === "true" || value === "yes";
  }

  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.cityops = Object.assign(window.dash_clientside.cityops || {}, {
    // Beijing time in the viewer's locale: the command centre's clock, whatever the
    // browser's own time zone.
    clock: function (_n, locale) {
      var lang = (locale && locale.locale) || "zh-CN";
      return new Date().toLocaleString(lang, {
        timeZone: "Asia/Shanghai",
        hour12: false,
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
      });
    },
    // A click on a map that carries a district code (a choropleth's location, or a
    // 6-digit code in a point's customdata) opens that district's page.
    openDistrict: function (clickData) {
      var point = clickData && clickData.points && clickData.points[0];
      var nothing = window.dash_clientside.no_update;
      if (!point) {
        return nothing;
      }
      var candidates = [point.location].concat(point.customdata);
      for (var i = 0; i < candidates.length; i++) {
        if (typeof candidates[i] === "string" && /^\d{6}$/.test(candidates[i])) {
          return "/districts/" + candidates[i];
        }
      }
      return nothing;
    },
    // On each navigation: header or kiosk, the language switch's way back, <html lang>.
    chrome: function (pathname, search, locale) {
      locale = locale || {};
      if (locale.html_lang) {
        document.documentElement.lang = locale.html_lang;
      }
      var params = new URLSearchParams(search || "");
      params.delete("lang");
      var rest = params.toString();
      var back = (pathname || "/") + (rest ? "?" + rest : "");
      var href = "/lang/" + (locale.other || "en") + "?next=" + encodeURIComponent(back);
      var isKiosk = kiosk(pathname, search, locale);
      show();
      return [isKiosk ? "shell kiosk" : "shell", href, { kiosk: isKiosk, path: pathname }];
    },
  });
})();
