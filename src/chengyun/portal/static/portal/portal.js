// Move focus to the error summary when a form comes back with errors
// (the summary also has `autofocus`, so this is only a fallback).
(function () {
  "use strict";
  var summary = document.getElementById("error-summary");
  if (summary && document.activeElement !== summary) summary.focus();
})();
