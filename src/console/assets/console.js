// berth console: the little the pages need beyond HTML. No inline script, no
// other origin. Elements opt in with data- attributes:
//   form[data-confirm]      asks before submitting
//   [data-copy="#id"]       copies the text of #id to the clipboard
//   form[data-swap="#id"]   (GET forms, links inside [data-swap] too) fetches the
//                           page and replaces #id with the new page's #id,
//                           keeping the address bar in step (htmx-style)
//   select[data-autosubmit] submits its form on change
//   form[data-match]        refuses to submit when its two password fields differ
//   input[data-reveal=sel]  a checkbox showing the password fields sel of its form while checked
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function swap(url, targetSel, push) {
    var target = document.querySelector(targetSel);
    if (!target) { window.location.href = url; return; }
    target.setAttribute("aria-busy", "true");
    fetch(url, { credentials: "same-origin", headers: { "X-Console-Swap": "1" } })
      .then(function (res) { return res.text().then(function (t) { return [res, t]; }); })
      .then(function (pair) {
        var doc = new DOMParser().parseFromString(pair[1], "text/html");
        var fresh = doc.querySelector(targetSel);
        if (!fresh || pair[0].redirected) { window.location.href = url; return; }
        target.replaceWith(fresh);
        if (push) {
          if (!history.state) { history.replaceState({ swap: targetSel }, ""); }
          history.pushState({ swap: targetSel }, "", url);
        }
      })
      .catch(function () { window.location.href = url; });
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var ask = form.getAttribute("data-confirm");
    if (ask && !window.confirm(ask)) { ev.preventDefault(); return; }
    if (form.hasAttribute("data-match")) {
      var pw = form.querySelectorAll("input[type=password][data-pair]");
      if (pw.length === 2 && pw[0].value !== pw[1].value) {
        ev.preventDefault();
        var msg = form.querySelector(".mismatch");
        if (msg) { msg.hidden = false; }
        return;
      }
    }
    var sel = form.getAttribute("data-swap");
    // getAttribute: a field named "action" or "method" shadows the form's properties.
    var method = (form.getAttribute("method") || "get").toLowerCase();
    if (sel && method === "get") {
      ev.preventDefault();
      var params = new URLSearchParams(new FormData(form));
      var action = new URL(form.getAttribute("action") || window.location.pathname, window.location.href);
      swap(action.pathname + "?" + params.toString(), sel, true);
    }
  });

  document.addEventListener("click", function (ev) {
    var el = ev.target.closest("[data-copy]");
    if (el) {
      var src = document.querySelector(el.getAttribute("data-copy"));
      if (!src) { return; }
      copyText(src.textContent.trim()).then(function () {
        el.setAttribute("data-copied", "true");
        el.textContent = el.getAttribute("data-done") || "Copied";
      }, function () {
        el.setAttribute("data-copied", "false");
      });
      return;
    }
    var link = ev.target.closest("a[href]");
    var region = link && link.closest("[data-swap]");
    if (region && !ev.ctrlKey && !ev.metaKey && !ev.shiftKey) {
      ev.preventDefault();
      swap(link.href, region.getAttribute("data-swap"), true);
    }
  });

  document.addEventListener("change", function (ev) {
    if (ev.target.matches("select[data-autosubmit]") && ev.target.form) {
      ev.target.form.requestSubmit();
    }
    if (ev.target.matches("input[data-reveal]") && ev.target.form) {
      var shown = ev.target.checked;
      ev.target.form.querySelectorAll(ev.target.getAttribute("data-reveal")).forEach(function (el) {
        el.type = shown ? "text" : "password";
      });
    }
  });

  window.addEventListener("popstate", function (ev) {
    if (ev.state && ev.state.swap) { swap(window.location.href, ev.state.swap, false); }
  });
})();
