/* The 12345 page: "显示" next to a masked caller asks the server for that one caller.
 *
 * POST /api/tickets/<id>/caller with the session's CSRF token (the _csrf_token cookie,
 * echoed as a header, as Dash does for its callbacks). The server checks the role and the
 * district and writes the reveal to the audit trail; a refusal is shown in place of the
 * name. The page redraws the stream as orders arrive (every second on a busy line), so
 * the revealed caller is kept in this tab for a minute and put back into each redraw of
 * that order's row; after that the row shows the masked caller again.
 */
(function () {
  "use strict";

  var KEEP_MS = 60000;
  /* ticket id → {text, until}: what this tab was shown, never stored anywhere else. */
  var revealed = {};

  function showIn(button, text) {
    var shown = button.parentElement.querySelector(".hotline-caller");
    /* textContent, never HTML: a caller's name is someone's input too. */
    shown.textContent = text;
    shown.classList.add("revealed");
    button.remove();
  }

  function reapply() {
    var tickets = Object.keys(revealed);
    if (!tickets.length) {
      return;
    }
    var now = Date.now();
    tickets.forEach(function (ticket) {
      if (revealed[ticket].until < now) {
        delete revealed[ticket];
      }
    });
    document.querySelectorAll(".hotline-reveal").forEach(function (button) {
      var entry = revealed[button.getAttribute("data-ticket")];
      if (entry) {
        showIn(button, entry.text);
      }
    });
  }

  new MutationObserver(reapply).observe(document.documentElement, { childList: true, subtree: true });

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)_csrf_token=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".hotline-reveal") : null;
    if (!button) {
      return;
    }
    var ticket = button.getAttribute("data-ticket");
    var shown = button.parentElement.querySelector(".hotline-caller");
    button.disabled = true;
    window
      .fetch("/api/tickets/" + encodeURIComponent(ticket) + "/caller", {
        method: "POST",
        headers: { "X-CSRFToken": csrfToken() },
        credentials: "same-origin",
        cache: "no-store",
      })
      .then(function (response) {
        return response.json().then(function (body) {
          return { ok: response.ok, body: body };
        });
      })
      .then(function (answer) {
        if (answer.ok) {
          var text = [answer.body.caller_name, answer.body.caller_phone].filter(Boolean).join(" ");
          revealed[ticket] = { text: text, until: Date.now() + KEEP_MS };
          if (button.isConnected) {
            showIn(button, text);
          }
          reapply(); /* the row may have been redrawn while the server answered */
        } else {
          shown.textContent = (answer.body && answer.body.message) || button.getAttribute("data-failed");
        }
      })
      .catch(function () {
        shown.textContent = button.getAttribute("data-failed");
        button.disabled = false;
      });
  });
})();
