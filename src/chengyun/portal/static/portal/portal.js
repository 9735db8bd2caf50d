// Move focus to the error summary when a form comes back with errors
// (the summary also has `autofocus`, so this is only a fallback).
// A link of the summary leads to its field with the field's label and error in
// view: the browser's own jump puts the input at the top of the window, above
// which they would be hidden (as GOV.UK's error summary does).
(function () {
  "use strict";
  var summary = document.getElementById("error-summary");
  if (!summary) return;
  if (document.activeElement !== summary) summary.focus();
  summary.addEventListener("click", function (e) {
    var link = e.target.closest ? e.target.closest("a[href^='#']") : null;
    if (!link) return;
    var target = document.getElementById(link.getAttribute("href").slice(1));
    if (!target) return;
    var around = target.closest(".field, .map-block, fieldset") || target;
    e.preventDefault();
    around.scrollIntoView({ block: "start" });
    target.focus({ preventScroll: true });
    if (history.replaceState) history.replaceState(null, "", link.getAttribute("href"));
  });
})();
