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

// Switching the language or the text size reloads the page: what was typed into the
// report form is kept in this tab (sessionStorage, never sent anywhere) and put back.
// Older people find "Larger text" half-way through a form. Without JavaScript the
// switch still works; the form then starts empty.
(function () {
  "use strict";
  var KEY = "chengyun-report-draft";
  var FIELDS = ["category", "description", "address", "lon", "lat", "name", "phone", "email"];
  var form = document.querySelector("form.report");
  var store;
  try { store = window.sessionStorage; } catch (e) { return; }
  if (!form || !store) return;
  function save() {
    var draft = {};
    FIELDS.forEach(function (name) {
      var el = form.elements[name];
      if (el && el.value) draft[name] = el.value;
    });
    if (Object.keys(draft).length) store.setItem(KEY, JSON.stringify(draft));
  }
  var saved = store.getItem(KEY);
  store.removeItem(KEY);
  if (saved) {
    var draft = {};
    try { draft = JSON.parse(saved) || {}; } catch (e) { draft = {}; }
    FIELDS.forEach(function (name) {
      var el = form.elements[name];
      if (el && !el.value && draft[name]) el.value = draft[name];
    });
  }
  document.querySelectorAll("header form.lang, header a.tool").forEach(function (el) {
    el.addEventListener(el.tagName === "FORM" ? "submit" : "click", save);
  });
})();
