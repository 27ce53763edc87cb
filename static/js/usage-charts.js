// Renders the usage dashboards' charts from the JSON the page embeds (#usage-data), again
// after each HTMX swap of the dashboard. plotly.js is served by the portal itself.
(function () {
  "use strict";
  var layout = {
    margin: { l: 48, r: 16, t: 8, b: 40 }, height: 260, showlegend: true,
    legend: { orientation: "h", y: -0.25 }, font: { family: "inherit", size: 12 },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
  };
  var config = { displaylogo: false, responsive: true,
                 modeBarButtonsToRemove: ["sendDataToCloud", "lasso2d", "select2d"] };

  function bars(items, key, name) {
    return [{ type: "bar", orientation: "h", name: name,
              y: items.map(function (i) { return i.label; }),
              x: items.map(function (i) { return i[key]; }) }];
  }

  var builders = {
    tokens: function (d) {
      return [{ type: "bar", name: "Input", x: d.buckets, y: d.input_tokens },
              { type: "bar", name: "Output", x: d.buckets, y: d.output_tokens },
              { type: "scatter", mode: "lines+markers", name: "Input read from cache",
                x: d.buckets, y: d.cached_input_tokens || [] }];
    },
    requests: function (d) {
      return [{ type: "bar", name: "Requests", x: d.buckets, y: d.requests },
              { type: "scatter", mode: "lines+markers", name: "Error rate (%)", x: d.buckets,
                y: d.error_rate, yaxis: "y2" }];
    },
    latency: function (d) {
      return [{ type: "scatter", mode: "lines+markers", name: "p50 (ms, ≤)", x: d.buckets, y: d.p50 },
              { type: "scatter", mode: "lines+markers", name: "p95 (ms, ≤)", x: d.buckets, y: d.p95 }];
    },
    cost_by_model: function (d) { return bars(d.cost_by_model, "value", "Cost"); },
    cost_by_key: function (d) { return bars(d.cost_by_key, "value", "Cost"); },
    by_tenant: function (d) { return bars(d.by_tenant, "cost", "Cost"); },
    by_deployment: function (d) { return bars(d.by_deployment, "requests", "Requests"); },
  };

  function render() {
    var source = document.getElementById("usage-data");
    if (!source || !window.Plotly) { return; }
    var data = JSON.parse(source.textContent);
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var name = el.getAttribute("data-chart");
      var extra = name === "requests"
        ? { barmode: "group", margin: { l: 48, r: 48, t: 8, b: 40 },
            yaxis2: { overlaying: "y", side: "right", rangemode: "tozero" } }
        : name === "tokens" ? { barmode: "stack" }
        : (name.indexOf("by_") === 0 || name.indexOf("cost_") === 0)
          ? { margin: { l: 160, r: 16, t: 8, b: 32 }, showlegend: false } : {};
      window.Plotly.react(el, builders[name](data), Object.assign({}, layout, extra), config);
    });
  }

  document.addEventListener("DOMContentLoaded", render);
  document.addEventListener("htmx:afterSettle", render);
})();
