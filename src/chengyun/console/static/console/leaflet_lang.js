// Leaflet's own controls in the page's language (its zoom buttons' titles are
// read by screen readers and shown on hover). Loaded right after leaflet.js.
(function () {
  "use strict";
  if (!window.L || (document.documentElement.lang || "").toLowerCase().indexOf("zh") !== 0) return;
  L.Control.Zoom.prototype.options.zoomInTitle = "放大";
  L.Control.Zoom.prototype.options.zoomOutTitle = "缩小";
})();
