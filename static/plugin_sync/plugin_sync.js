/* plugin_sync: long work started from a page (an import, a preview, a sync) runs as a job in the background.
   While it runs, the page's #ps-job card polls its JSON endpoint (job.json/<id>) and draws the progress bar
   with the server's text (rows done, rate, time left, in the page's language); the forms' buttons stay
   disabled; when it has finished, the server's fragment (the report, or the error) replaces the card.
   Without JavaScript the card has a Refresh link. */
(function () {
  var BUSY = "#ps-import-form, #ps-confirm-form, #ps-export-form, form.ps-inline";  // waiting for a job
  var SENT = "#ps-import-form, #ps-confirm-form, form.ps-inline";  // waiting for an answer page (not a download)
  var POLL = 500, RETRY = 2000;  // ms between polls; after a failed poll

  function buttons(disabled) {
    document.querySelectorAll(BUSY).forEach(function (form) {
      form.querySelectorAll("input[type=submit], button").forEach(function (b) { b.disabled = disabled; });
      form.classList.toggle("ps-busy", disabled);
    });
  }

  function draw(card, job) {
    var bar = card.querySelector("progress"), text = card.querySelector(".ps-progress-text");
    card.dataset.state = job.state;
    card.dataset.done = job.done;
    if (job.total) { bar.max = job.total; bar.value = job.done; } else { bar.removeAttribute("value"); }
    if (text) { text.textContent = job.text; }
  }

  function finished(card, job) {
    var holder = document.createElement("div");
    holder.innerHTML = job.html || "";
    var parent = card.parentNode;
    while (holder.firstChild) { parent.insertBefore(holder.firstChild, card); }
    parent.removeChild(card);
    buttons(false);
    if (job.kind === "sync") { refresh(["table.ps-health", "table.ps-peers"]); }
  }

  // after a sync, the page's peer tables (drawn before it ran) are drawn again from the page itself
  function refresh(selectors) {
    fetch(location.pathname, {credentials: "same-origin"})
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        selectors.forEach(function (sel) {
          var old = document.querySelector(sel), now = fresh.querySelector(sel);
          if (old && now) { old.replaceWith(now); }
        });
      });
  }

  function poll(card) {
    fetch(card.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (job) {
        if (job.state === "done" || job.state === "failed") { finished(card, job); return; }
        draw(card, job);
        setTimeout(function () { poll(card); }, POLL);
      })
      .catch(function () { setTimeout(function () { poll(card); }, RETRY); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var card = document.getElementById("ps-job");
    if (card) {
      buttons(true);
      poll(card);
    }
  });

  // while a form's request is on its way (an upload), its buttons are disabled and say so
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches(SENT)) { return; }
    setTimeout(function () {  // after the browser took the submitter's value
      form.querySelectorAll("input[type=submit], button").forEach(function (b) { b.disabled = true; });
      form.classList.add("ps-busy");
    }, 0);
  });
}());
