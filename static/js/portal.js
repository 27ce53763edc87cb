// Small behaviours shared by every page. Everything else is plain HTML and htmx.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    // Dismiss a flash message.
    var close = event.target.closest(".message-close");
    if (close) {
      close.closest(".message").remove();
      return;
    }
    // Copy a secret to the clipboard: <button data-copy="#input-id">.
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var field = document.querySelector(copy.getAttribute("data-copy"));
      field.select();
      (navigator.clipboard ? navigator.clipboard.writeText(field.value) : Promise.reject())
        .catch(function () { document.execCommand("copy"); });
      copy.textContent = "Copied";
      return;
    }
    // "Go back" on error pages: the previous page when there is one, else the link's href.
    var back = event.target.closest("[data-history-back]");
    if (back && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
      return;
    }
    // Close open menus when clicking elsewhere.
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      menu.removeAttribute("open");
      menu.querySelector("summary").focus();
    });
  });

  // Forms that need a second thought without htmx: <form data-confirm="…">.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !event.target.hasAttribute("hx-post") && !window.confirm(message)) {
      event.preventDefault();
    }
  });
})();
