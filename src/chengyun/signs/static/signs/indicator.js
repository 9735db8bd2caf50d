// One indicator's chart: the values (mean line with a min-max band),
// the bands as lines, and each warning as a shaded area coloured by level.
// Data are embedded in the page (json_script); times are shown in city time
// whatever the browser's zone: timestamps are shifted by the city's offset
// and the chart runs in UTC.
(function () {
  var el = document.getElementById("chart");
  var src = document.getElementById("chart-data");
  if (!el || !src || !window.echarts) return;
  var d = JSON.parse(src.textContent);
  el.hidden = false;
  var table = document.getElementById("points");
  if (table) table.open = false; // still there for screen readers and for exact numbers

  var off = d.offset_ms;
  var COLOURS = { warning: "rgba(239, 143, 0, 0.18)", alarm: "rgba(198, 40, 40, 0.20)" };
  var LINES = { warning: "#b86e00", alarm: "#c62828" };

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function cityTime(t, withDate) {
    var x = new Date(t);
    var hm = pad(x.getUTCHours()) + ":" + pad(x.getUTCMinutes());
    if (!withDate) return hm;
    return x.getUTCFullYear() + "-" + pad(x.getUTCMonth() + 1) + "-" + pad(x.getUTCDate()) + " " + hm;
  }
  function fmt(v) {
    if (v === null || v === undefined || isNaN(v)) return "—";
    return Math.abs(v) >= 10000 ? v.toFixed(0) : Number(v.toPrecision(4)).toString();
  }

  function nearest(t) { // the point closest in time (binary search; points are in time order)
    var a = 0, b = d.points.length - 1;
    if (b < 0) return null;
    while (b - a > 1) {
      var m = (a + b) >> 1;
      if (d.points[m][0] <= t) a = m; else b = m;
    }
    return Math.abs(d.points[a][0] - t) <= Math.abs(d.points[b][0] - t) ? d.points[a] : d.points[b];
  }

  var mean = [], lower = [], spread = [];
  var lo = Infinity, hi = -Infinity;
  d.points.forEach(function (p) {
    var t = p[0] + off;
    mean.push([t, p[1]]);
    lower.push([t, p[2]]);
    spread.push([t, p[3] - p[2]]);
    lo = Math.min(lo, p[2]);
    hi = Math.max(hi, p[3]);
  });
  d.bands.forEach(function (b) { lo = Math.min(lo, b.value); hi = Math.max(hi, b.value); });
  // Axis bounds holding the values and every band line, rounded to a step.
  var span = isFinite(hi - lo) && hi > lo ? hi - lo : Math.max(Math.abs(hi) * 0.1, 1);
  var step = Math.pow(10, Math.floor(Math.log10(span))) / 2;
  var yMin = isFinite(lo) ? Math.floor((lo - span * 0.04) / step) * step : null;
  var yMax = isFinite(hi) ? Math.ceil((hi + span * 0.04) / step) * step : null;
  function tidy(v) { return v === null ? null : Number(v.toPrecision(6)); }
  var hasBand = d.resolution !== "raw";

  var areas = d.warnings.map(function (w) {
    return [
      { name: w.label, xAxis: w.start + off, itemStyle: { color: COLOURS[w.level] },
        label: { color: LINES[w.level], fontSize: 11 } },
      { xAxis: w.end + off },
    ];
  });
  var lines = d.bands.map(function (b) {
    return { yAxis: b.value, name: b.label, lineStyle: { color: LINES[b.level], type: "dashed", width: 1.2 },
             label: { formatter: b.label + " " + fmt(b.value), position: "insideEndTop", color: LINES[b.level] } };
  });

  var series = [];
  if (hasBand) {
    series.push({ name: d.labels.min, type: "line", data: lower, stack: "band", symbol: "none",
                  lineStyle: { opacity: 0 }, silent: true, tooltip: { show: false } });
    series.push({ name: d.labels.range, type: "line", data: spread, stack: "band", symbol: "none",
                  lineStyle: { opacity: 0 }, areaStyle: { color: "rgba(21, 101, 192, 0.16)" }, silent: true });
  }
  series.push({
    name: d.labels.mean, type: "line", data: mean, symbol: "none", sampling: "lttb",
    lineStyle: { color: "#1565c0", width: 1.6 }, itemStyle: { color: "#1565c0" },
    markArea: { silent: false, data: areas },
    markLine: { silent: true, symbol: "none", data: lines },
  });

  var chart = echarts.init(el, null, { locale: d.locale, renderer: "canvas" });
  chart.setOption({
    useUTC: true,
    animation: false,
    grid: { left: 64, right: 24, top: 28, bottom: 72 },
    tooltip: {
      trigger: "axis",
      formatter: function (params) {
        if (!params.length) return "";
        var p = nearest(params[0].axisValue - off);
        if (!p) return "";
        var head = cityTime(p[0] + off, true);
        var body = d.labels.mean + ": " + fmt(p[1]) + " " + d.unit;
        if (hasBand) body += "<br>" + d.labels.range + ": " + fmt(p[2]) + " – " + fmt(p[3]);
        return head + "<br>" + body;
      },
    },
    xAxis: {
      type: "time", min: d.start + off, max: d.end + off,
      axisLabel: { hideOverlap: true, formatter: function (v) {
        var span = d.end - d.start;
        return span > 2 * 86400000 ? cityTime(v, true).slice(5, 10) + "\n" + cityTime(v) : cityTime(v);
      } },
    },
    yAxis: {
      type: "value", name: d.unit, scale: true,
      min: tidy(yMin), max: tidy(yMax),
    },
    dataZoom: [{ type: "inside" }, { type: "slider", height: 22, bottom: 12, labelFormatter: function (v) { return cityTime(v, true); } }],
    series: series,
  });
  window.addEventListener("resize", function () { chart.resize(); });
})();
