/* The wall (/wall) in the browser: rotating focus, the alarm and its mute key.
 *
 * The alarm follows the console's: it plays assets/alarm.wav while the live audible set
 * is not empty and this screen is not muted; play() may be refused until the page had a
 * user gesture, unless the kiosk was started with --autoplay-policy=no-user-gesture-required.
 */
(function () {
  "use strict";

  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.cityops = Object.assign(window.dash_clientside.cityops || {}, {
    // One panel in focus at a time, in the registered order.
    wallRotate: function (n, ids) {
      var count = (ids || []).length;
      var at = count ? (n || 0) % count : 0;
      var panels = [];
      var tabs = [];
      for (var i = 0; i < count; i++) {
        panels.push(i === at ? "wall-panel focus" : "wall-panel");
        tabs.push(i === at ? "wall-tab focus" : "wall-tab");
      }
      return [panels, tabs];
    },
    // Texts come from the catalogue, in the viewer's language (the page's wall-texts store).
    wallAlarm: function (live, muted, forced, texts) {
      texts = texts || { alarm: "{n}", mute: "", unmute: "", muted: "" };
      var quiet = Boolean(muted || forced);
      // The server sends the count and the few titles the banner names, not every alert.
      var count = (live && live.count) || 0;
      var titles = (live && live.titles) || [];
      var audio = document.getElementById("wall-audio");
      if (audio) {
        if (count && !quiet) {
          if (audio.paused) {
            var played = audio.play();
            if (played) {
              played.catch(function () {
                return null;
              });
            }
          }
        } else if (!audio.paused) {
          audio.pause();
          audio.currentTime = 0;
        }
      }
      var banner = "";
      if (count) {
        banner = texts.alarm.replace("{n}", count) +
          titles.join("；") +
          (quiet ? " · " + texts.muted : "");
      }
      return [banner, count ? "wall-alarm ringing" : "wall-alarm", quiet ? texts.unmute : texts.mute];
    },
    // M mutes this screen (a technician's keyboard; the wall itself needs no input).
    wallKeys: function () {
      if (window.cityopsWallKeys) {
        return window.dash_clientside.no_update;
      }
      window.cityopsWallKeys = true;
      document.addEventListener("keydown", function (event) {
        if (!document.getElementById("wall-mute-toggle")) {
          return;
        }
        if ((event.key || "").toLowerCase() === "m" && !event.ctrlKey && !event.metaKey && !event.altKey) {
          document.getElementById("wall-mute-toggle").click();
        }
      });
      return true;
    },
  });
})();
