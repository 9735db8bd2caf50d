// Report form map (progressive enhancement): the city's district outlines
// from our own API, no tile server. A click (or Enter on the focused map)
// places a pin and fills in the longitude and latitude fields, which work
// on their own without JavaScript.
(function () {
  "use strict";
  var block = document.getElementById("map-block");
  var lonInput = document.getElementById("id_lon"), latInput = document.getElementById("id_lat");
  if (!block || !window.L || !lonInput || !latInput) return;
  block.hidden = false;
  var t = block.dataset, status = document.getElementById("map-status");
  // The hint names the map only where there is one (without JavaScript there is not).
  var whereHint = document.getElementById("where-hint");
  if (whereHint && t.tHint) whereHint.textContent = t.tHint;
  var el = document.getElementById("map");
  // A pin the server refused (outside the city) was placed on the map: say so at the
  // map, and let the error summary's link lead there instead of to the coordinates.
  var latError = document.getElementById("id_lat_error");
  var sent = [Number(lonInput.value), Number(latInput.value)];
  // Two numbers in range: the error is about the place (outside the city), not about
  // a missing or mistyped coordinate, which is corrected in its own field.
  var pinRefused = lonInput.value.trim() && latInput.value.trim() && isFinite(sent[0]) && isFinite(sent[1]) &&
    Math.abs(sent[0]) <= 180 && Math.abs(sent[1]) <= 90;
  if (latError && pinRefused) {
    var mapError = latError.cloneNode(true);
    mapError.id = "map-error";
    block.classList.add("has-error");
    block.insertBefore(mapError, el);
    el.setAttribute("aria-describedby", "map-error map-hint");
    var latLabel = document.querySelector('label[for="id_lat"]');
    var legend = block.parentNode.querySelector("legend .legend-text") || block.parentNode.querySelector("legend");
    Array.prototype.forEach.call(document.querySelectorAll('.error-summary a[href="#id_lat"]'), function (a) {
      a.href = "#map";
      // "Where is it?" as a label: without its question mark before the separator.
      var where = legend ? legend.textContent.trim().replace(/[?？]$/, "") : "";
      if (latLabel && where) a.textContent = a.textContent.replace(latLabel.textContent.trim(), where);
    });
  }
  var zh = (document.documentElement.lang || "").toLowerCase().indexOf("zh") === 0;
  var map = L.map(el, { attributionControl: false, keyboard: true, zoomSnap: 0.25 }).setView([31, 121], 9);
  var pin = null, seq = 0;

  function say(text) { status.textContent = text; }

  function place(lat, lon, announce) {
    if (pin) pin.setLatLng([lat, lon]);
    else pin = L.circleMarker([lat, lon], { radius: 12, color: "#8a1c12", weight: 4, fillColor: "#e53935", fillOpacity: 0.9 }).addTo(map);
    if (!announce) return;
    lonInput.value = lon.toFixed(6);
    latInput.value = lat.toFixed(6);
    var mine = ++seq;
    fetch(t.locateUrl + "?lon=" + encodeURIComponent(lon) + "&lat=" + encodeURIComponent(lat))
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (mine !== seq) return;
        if (!data || !data.chain || !data.chain.length) { say(t.tOutside); return; }
        say(t.tPlaced + " " + data.chain.map(function (a) { return zh ? a.name : (a.name_en || a.name); }).join(" › "));
      })
      .catch(function () { say(t.tOutside); });
  }

  function clearPin() {
    if (pin) { map.removeLayer(pin); pin = null; }
    lonInput.value = ""; latInput.value = ""; seq++;
    say(t.tCleared);
  }

  function fromInputs() {
    var lon = parseFloat(lonInput.value), lat = parseFloat(latInput.value);
    if (isFinite(lon) && isFinite(lat)) { place(lat, lon, false); return true; }
    return false;
  }

  fetch(t.geojsonUrl + "?children=true")
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (gj) {
      if (!gj || !gj.features.length) return fetch(t.geojsonUrl).then(function (r) { return r.ok ? r.json() : null; });
      return gj;
    })
    .then(function (gj) {
      if (!gj || !gj.features.length) return;
      var layer = L.geoJSON(gj, {
        style: { color: "#0b3d91", weight: 2, fillColor: "#5c8dd6", fillOpacity: 0.08 },
        onEachFeature: function (f, l) {
          if (f.properties && f.properties.name) l.bindTooltip(f.properties.name, { sticky: true });
        }
      }).addTo(map);
      map.fitBounds(layer.getBounds());
      if (pin) map.panTo(pin.getLatLng());
    });

  map.on("click", function (e) { place(e.latlng.lat, e.latlng.lng, true); });
  el.addEventListener("keydown", function (e) {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      var c = map.getCenter();
      place(c.lat, c.lng, true);
    }
  });
  lonInput.addEventListener("change", fromInputs);
  latInput.addEventListener("change", fromInputs);
  document.getElementById("map-clear").addEventListener("click", clearPin);

  var here = document.getElementById("map-here");
  if (!navigator.geolocation) here.hidden = true;
  here.addEventListener("click", function () {
    say(t.tLocating);
    navigator.geolocation.getCurrentPosition(function (p) {
      place(p.coords.latitude, p.coords.longitude, true);
      map.setView([p.coords.latitude, p.coords.longitude], Math.max(map.getZoom(), 14));
    }, function () { say(t.tNogeo); }, { enableHighAccuracy: true, timeout: 15000 });
  });

  fromInputs();
})();
