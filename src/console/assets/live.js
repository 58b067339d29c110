// berth console: the live views. The publish view: A table[data-live] names its
// server-sent events stream; each "row" event carries one node's row as the
// server renders it (escaped there), "nodes" the nodes that have a
// publication (first, and whenever that changes: other rows go), "refused"
// why the stream ended. Nothing is polled from here.
// A pre[data-log-stream] follows a container log: "line" events are appended
// as text, "end" and "refused" close the stream; a stream opened again (a
// dropped connection) starts over from its tail.
(function () {
  "use strict";
  var pre = document.querySelector("pre[data-log-stream]");
  if (!pre || !window.EventSource) { return; }
  var status = document.getElementById("log-status");
  var source = new EventSource(pre.getAttribute("data-log-stream"));
  var lines = 0;
  function finish(text, bad) {
    source.close();
    pre.setAttribute("data-stream", "closed");
    if (status && text) {
      status.textContent = text;
      if (bad) { status.className = "alert bad"; status.setAttribute("role", "alert"); }
    }
  }
  source.addEventListener("open", function () {
    pre.textContent = "";
    lines = 0;
    pre.setAttribute("data-stream", "open");
  });
  source.addEventListener("line", function (ev) {
    var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(ev.data + "\n"));
    lines += 1;
    pre.setAttribute("data-lines", String(lines));
    if (atEnd) { pre.scrollTop = pre.scrollHeight; }
  });
  source.addEventListener("end", function () { finish("", false); });
  source.addEventListener("refused", function (ev) { finish(ev.data, true); });
  window.addEventListener("pagehide", function () { source.close(); });
})();

(function () {
  "use strict";
  var table = document.querySelector("table[data-live]");
  if (!table || !window.EventSource) { return; }
  var body = table.tBodies[0];
  var received = 0;

  function rowOf(node) {
    return body.querySelector("tr[data-node=\"" + CSS.escape(node) + "\"]");
  }

  function settle() {
    received += 1;
    table.setAttribute("data-events", String(received));
    var empty = body.querySelector("tr.live-empty");
    if (empty) { empty.hidden = body.querySelectorAll("tr[data-node]").length > 0; }
  }

  var source = new EventSource(table.getAttribute("data-live"));
  source.addEventListener("open", function () { table.setAttribute("data-stream", "open"); });
  source.addEventListener("row", function (ev) {
    var msg = JSON.parse(ev.data);
    var tpl = document.createElement("template");
    tpl.innerHTML = msg.html.trim();
    var fresh = tpl.content.firstElementChild;
    if (!fresh) { return; }
    var old = rowOf(msg.node);
    if (old) { old.replaceWith(fresh); } else { body.appendChild(fresh); }
    settle();
  });
  source.addEventListener("nodes", function (ev) {
    var nodes = JSON.parse(ev.data);
    body.querySelectorAll("tr[data-node]").forEach(function (tr) {
      if (nodes.indexOf(tr.getAttribute("data-node")) < 0) { tr.remove(); }
    });
    settle();
  });
  source.addEventListener("refused", function (ev) {
    source.close();
    table.setAttribute("data-stream", "closed");
    var note = document.createElement("p");
    note.className = "alert bad";
    note.setAttribute("role", "alert");
    note.textContent = ev.data;
    table.parentNode.insertBefore(note, table);
  });
  // Leaving the page closes the stream rather than letting it error.
  window.addEventListener("pagehide", function () { source.close(); });
})();
