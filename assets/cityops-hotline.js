/* The 12345 page: "显示" next to a masked caller asks the server for that one caller.
 *
 * POST /api/tickets/<id>/caller with the session's CSRF token (the _csrf_token cookie,
 * echoed as a header, as Dash does for its callbacks). The server checks the role and the
 * district and writes the reveal to the audit trail; a refusal is shown in place of the
 * name. The caller stays on screen until the next refresh masks it again.
 */
(function () {
  "use strict";

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
          /* textContent, never HTML: a caller's name is someone's input too. */
          shown.textContent = [answer.body.caller_name, answer.body.caller_phone].filter(Boolean).join(" ");
          shown.classList.add("revealed");
          button.remove();
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
