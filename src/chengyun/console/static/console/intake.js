// Staff intake pages. Everything here is an enhancement: both forms work
// without JavaScript (the submit button, the photo's EXIF position, the grid select).
(function () {
  "use strict";
  var script = document.currentScript;
  document.documentElement.classList.add("js");  // shows the .js-only controls

  // Ctrl+Enter (or Cmd+Enter) submits the hotline form from any field.
  document.querySelectorAll("form[data-submit-on-ctrl-enter]").forEach(function (form) {
    form.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        if (form.requestSubmit) form.requestSubmit(); else form.submit();
      }
    });
  });

  // "Use this category" in the suggestion panel (swapped in by htmx, so delegated).
  document.addEventListener("click", function (e) {
    var btn = e.target.closest && e.target.closest("button.use-category");
    if (!btn) return;
    var select = document.getElementById("f-cat");
    if (select) { select.value = btn.dataset.code; select.focus(); }
  });

  // Inspector: the device's position fills the hidden lon/lat.
  var status = document.getElementById("geo-status");
  var lon = document.getElementById("f-lon"), lat = document.getElementById("f-lat");
  var retry = document.getElementById("geo-retry");
  function locate() {
    if (!status || !lon || !lat || !navigator.geolocation) return;
    status.textContent = script.dataset.geoWait;
    navigator.geolocation.getCurrentPosition(function (pos) {
      lon.value = pos.coords.longitude.toFixed(7);
      lat.value = pos.coords.latitude.toFixed(7);
      status.textContent = script.dataset.geoOk.replace("%(m)s", Math.round(pos.coords.accuracy));
      status.classList.add("ok");
      if (retry) retry.hidden = true;
    }, function () {
      lon.value = ""; lat.value = "";
      status.textContent = script.dataset.geoFail;
      if (retry) retry.hidden = false;
    }, { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
  }
  if (retry) retry.addEventListener("click", locate);
  if (status && lon && !lon.value) locate();

  // Inspector: "fixed on the spot" only for categories that allow it (the server checks too).
  var cat = document.getElementById("f-cat"), box = document.getElementById("self-dispose");
  if (cat && box) {
    box.querySelectorAll(".js-hide").forEach(function (el) { el.hidden = true; });
    var fixed = document.getElementById("f-fixed"), note = document.getElementById("f-note");
    var sync = function () {
      var opt = cat.options[cat.selectedIndex];
      var allowed = opt && opt.dataset.selfDispose === "1";
      box.hidden = !allowed;
      if (!allowed && fixed) fixed.checked = false;
      if (note) note.required = allowed && fixed && fixed.checked;
    };
    cat.addEventListener("change", sync);
    if (fixed) fixed.addEventListener("change", sync);
    sync();
  }
})();
