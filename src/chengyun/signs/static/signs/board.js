// Vital signs board: sensors on a map coloured by state, with district
// outlines from our own API; no tile server is needed (deployments may be
// offline). The data comes embedded in the page (json_script).
(function () {
  var el = document.getElementById("signs-map");
  var src = document.getElementById("signs-map-data");
  if (!el || !src || !window.L) return;
  var data = JSON.parse(src.textContent);
  var map = L.map(el, { attributionControl: false, preferCanvas: true });

  function text(tag, value, cls) {
    var node = document.createElement(tag);
    node.textContent = value;
    if (cls) node.className = cls;
    return node;
  }
  function link(href, value) {
    var a = text("a", value);
    a.href = href;
    return a;
  }
  function sensorPopup(s) {
    var box = document.createElement("div");
    box.appendChild(text("strong", s.code));
    box.appendChild(document.createTextNode(" " + s.name));
    box.appendChild(document.createElement("br"));
    box.appendChild(text("span", s.label, "state st-" + s.state));
    box.appendChild(document.createTextNode(" " + s.value));
    box.appendChild(document.createElement("br"));
    box.appendChild(text("span", data.labels.last + ": " + s.at, "muted"));
    if (s.url) {
      box.appendChild(document.createElement("br"));
      box.appendChild(link(s.url, data.labels.open + ": " + s.indicator));
    }
    return box;
  }
  function clusterPopup(c) {
    var box = document.createElement("div");
    box.appendChild(text("div", c.title));
    if (c.url) box.appendChild(link(c.url, data.labels.case + " " + c.case));
    return box;
  }

  var bounds = L.latLngBounds([]);
  // Draw the worst states last so they sit on top.
  var order = { ok: 0, unknown: 1, silent: 2, warning: 3, alarm: 4 };
  data.sensors.slice().sort(function (a, b) { return order[a.state] - order[b.state]; }).forEach(function (s) {
    var big = s.state === "alarm" || s.state === "warning";
    L.circleMarker([s.lat, s.lon], {
      radius: big ? 8 : 6, color: "#263238", weight: 1, fillColor: s.colour, fillOpacity: 0.9,
      dashArray: s.state === "unknown" ? "2 2" : null,
    }).bindPopup(sensorPopup(s)).bindTooltip(s.code + " · " + s.label).addTo(map);
    bounds.extend([s.lat, s.lon]);
  });
  var clusterStyle = { color: "#6a1b9a", weight: 2, dashArray: "6 4", fillOpacity: 0.08 };
  data.clusters.forEach(function (c) {
    if (c.radius_m === null && c.area) {  // by area: the street's outline
      fetch("/api/v1/areas/" + encodeURIComponent(c.area) + "/geojson")
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (gj) { if (gj) L.geoJSON(gj, { style: clusterStyle }).bindPopup(clusterPopup(c)).addTo(map); });
    } else {
      L.circle([c.lat, c.lon], Object.assign({ radius: c.radius_m }, clusterStyle)).bindPopup(clusterPopup(c)).addTo(map);
    }
    bounds.extend([c.lat, c.lon]);
  });
  if (bounds.isValid()) map.fitBounds(bounds.pad(0.15), { maxZoom: 15 });
  else map.setView([0, 0], 2);

  if (data.root) {
    fetch("/api/v1/areas/" + encodeURIComponent(data.root) + "/geojson?children=true")
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (gj) {
        if (!gj) return;
        var layer = L.geoJSON(gj, {
          style: { color: "#1565c0", weight: 1.5, fillOpacity: 0.04 },
          interactive: false,
        }).addTo(map);
        layer.bringToBack();
        if (!bounds.isValid()) map.fitBounds(layer.getBounds());
      });
  }

  // Optional refresh for a wall screen; skipped while someone is typing a note.
  var box = document.getElementById("autorefresh");
  var label = document.getElementById("autorefresh-label");
  if (box && label) {
    label.hidden = false;
    var key = "chengyun.signs.autorefresh";
    box.checked = window.localStorage && localStorage.getItem(key) === "1";
    box.addEventListener("change", function () {
      if (window.localStorage) localStorage.setItem(key, box.checked ? "1" : "0");
    });
    setInterval(function () {
      var active = document.activeElement;
      var typing = active && active.tagName === "INPUT" && active.type !== "checkbox";
      if (box.checked && !document.hidden && !typing) window.location.reload();
    }, 60000);
  }
})();
