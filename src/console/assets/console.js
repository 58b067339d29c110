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
//   [data-add-container=sel] adds an empty copy of the last fieldset.container of sel
//                           (fields c.<n>.*, numbered past the last); at most data-max
//   [data-remove-container] removes its fieldset.container, keeping one
//                           (both are submit buttons the server answers without script)
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

  function containerRows(box) {
    return box.querySelectorAll("fieldset.container");
  }

  function showRowButtons(box) {
    var rows = containerRows(box);
    rows.forEach(function (r) {
      var rm = r.querySelector("[data-remove-container]");
      if (rm) { rm.hidden = rows.length < 2; }
    });
    var add = document.querySelector("[data-add-container]");
    if (add) { add.hidden = rows.length >= Number(add.getAttribute("data-max") || 16); }
  }

  function addContainer(btn) {
    var box = document.querySelector(btn.getAttribute("data-add-container"));
    var rows = box ? containerRows(box) : [];
    if (!rows.length) { return; }
    var last = rows[rows.length - 1];
    var next = 0;
    rows.forEach(function (r) { next = Math.max(next, Number(r.getAttribute("data-index")) + 1); });
    var from = "c." + last.getAttribute("data-index") + ".";
    var row = last.cloneNode(true);
    row.setAttribute("data-index", String(next));
    row.querySelectorAll("[name]").forEach(function (f) {
      if (f.name.indexOf(from) === 0) { f.name = "c." + next + "." + f.name.slice(from.length); }
      if (f.type === "checkbox") { f.checked = false; }
      else if (f.tagName === "SELECT") { f.selectedIndex = 0; }
      else if (f.hasAttribute("data-remove-container")) { f.value = "remove:" + next; }
      else if (f.tagName === "TEXTAREA") { f.textContent = ""; f.value = ""; }
      else { f.value = ""; }
    });
    box.appendChild(row);
    showRowButtons(box);
    var first = row.querySelector("input[type=text]");
    if (first) { first.focus(); }
  }

  document.addEventListener("click", function (ev) {
    var add = ev.target.closest("[data-add-container]");
    if (add) { ev.preventDefault(); addContainer(add); return; }
    var rm = ev.target.closest("[data-remove-container]");
    if (rm) {
      ev.preventDefault();
      var row = rm.closest("fieldset.container");
      var box = row && row.parentNode;
      if (box && containerRows(box).length > 1) { row.remove(); showRowButtons(box); }
      return;
    }
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
