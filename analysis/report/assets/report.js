/* Live sweep report: every data-refresh-s seconds, fetch this page again and swap the sections that changed,
   in place, keeping open notes and horizontal table scroll. Stops once the page it fetched is no longer live. */
(function () {
  "use strict";
  var body = document.body;
  if (!body || body.getAttribute("data-live") !== "true") {
    return;
  }
  var every = Math.max(1, parseInt(body.getAttribute("data-refresh-s") || "10", 10)) * 1000;
  var status = document.getElementById("refresh-status");

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  function keepState() {
    var open = {};
    var scroll = {};
    document.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
    document.querySelectorAll(".scroll[id]").forEach(function (e) { scroll[e.id] = e.scrollLeft; });
    return { open: open, scroll: scroll };
  }

  function restoreState(state) {
    Object.keys(state.open).forEach(function (id) {
      var d = document.getElementById(id);
      if (d) { d.open = state.open[id]; }
    });
    Object.keys(state.scroll).forEach(function (id) {
      var e = document.getElementById(id);
      if (e) { e.scrollLeft = state.scroll[id]; }
    });
  }

  function swap(doc) {
    var state = keepState();
    doc.querySelectorAll("[data-swap][id]").forEach(function (fresh) {
      var old = document.getElementById(fresh.id);
      if (old && old.innerHTML !== fresh.innerHTML) {
        old.innerHTML = fresh.innerHTML;
        old.className = fresh.className;
      }
    });
    restoreState(state);
    document.title = doc.title;
    body.setAttribute("data-live", doc.body.getAttribute("data-live") || "false");
    body.setAttribute("data-refreshes", String(parseInt(body.getAttribute("data-refreshes") || "0", 10) + 1));
  }

  function tick() {
    if (window.location.protocol === "file:") {
      window.location.reload();  /* a saved file cannot fetch itself; a reload re-reads it */
      return;
    }
    fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (text) {
        swap(new DOMParser().parseFromString(text, "text/html"));
        say("");
        if (body.getAttribute("data-live") === "true") { schedule(); }
      })
      .catch(function (err) {
        say("refresh failed (" + err.message + "); retrying");
        schedule();
      });
  }

  function schedule() {
    window.setTimeout(tick, every);
  }

  schedule();
})();
