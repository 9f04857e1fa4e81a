/* plugin_sync: while a form's long work runs (an import, a preview, a sync), its buttons are disabled
   and say so; the answer page replaces it. (No progress bar yet: see issue 15, item 7.) */
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!form.matches("#ps-import-form, #ps-confirm-form, form.ps-inline")) { return; }
  setTimeout(function () {  // after the browser took the submitter's value
    form.querySelectorAll("input[type=submit], button").forEach(function (b) { b.disabled = true; });
    form.classList.add("ps-busy");
  }, 0);
});
