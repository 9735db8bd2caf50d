// Case map: the case's area outline from our own API and a pin; no tile
// server is needed (deployments may be offline).
(function () {
  var el = document.getElementById("map");
  if (!el || !window.L) return;
  var lon = parseFloat(el.dataset.lon), lat = parseFloat(el.dataset.lat);
  var map = L.map(el, { attributionControl: false }).setView([lat, lon], 15);
  L.circleMarker([lat, lon], { radius: 9, color: "#b3261e", weight: 3, fillColor: "#ef5350", fillOpacity: 0.9 }).addTo(map);
  var area = el.dataset.area;
  if (area) {
    fetch("/api/v1/areas/" + encodeURIComponent(area) + "/geojson")
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (gj) {
        if (!gj) return;
        var layer = L.geoJSON(gj, { style: { color: "#1565c0", weight: 2, fillOpacity: 0.08 } }).addTo(map);
        map.fitBounds(layer.getBounds(), { maxZoom: 16 });
      });
  }
})();
