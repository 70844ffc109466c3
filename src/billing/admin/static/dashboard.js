// Draws the dashboard's charts from the page's JSON data block (the CSP runs no inline
// script). Money arrives in minor units and is only divided for the axis and tooltips.
(function () {
  "use strict";
  var block = document.getElementById("dashboard-data");
  if (!block || typeof Chart === "undefined") return;
  var data = JSON.parse(block.textContent);
  var lang = document.documentElement.lang || "ru";
  var roubles = new Intl.NumberFormat(lang, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  function money(minor) { return roubles.format(minor / 100) + "\u00a0" + data.currency; }
  function tooltipMoney(context) { return context.dataset.label + ": " + money(context.raw); }
  Chart.defaults.animation = false;

  new Chart(document.getElementById("chart-revenue"), {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { type: "line", label: data.names.net, data: data.net, borderColor: "#2fb344", backgroundColor: "#2fb344", tension: 0.2 },
        { label: data.names.gross, data: data.gross, backgroundColor: "#206bc4" },
        { label: data.names.refunded, data: data.refunded, backgroundColor: "#d63939" }
      ]
    },
    options: {
      maintainAspectRatio: false,
      scales: { y: { beginAtZero: true, ticks: { callback: function (value) { return money(value); } } } },
      plugins: { tooltip: { callbacks: { label: tooltipMoney } } }
    }
  });

  new Chart(document.getElementById("chart-counts"), {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { label: data.names.payments, data: data.payments, backgroundColor: "#206bc4" },
        { label: data.names.refunds, data: data.refunds, backgroundColor: "#d63939" }
      ]
    },
    options: { maintainAspectRatio: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
  });

  new Chart(document.getElementById("chart-active"), {
    type: "bar",
    data: {
      labels: data.tariffs,
      datasets: [{ label: data.names.active, data: data.active, backgroundColor: "#4299e1" }]
    },
    options: {
      indexAxis: "y",
      maintainAspectRatio: false,
      plugins: { legend: { display: false } },
      scales: { x: { beginAtZero: true, ticks: { precision: 0 } } }
    }
  });
  document.body.setAttribute("data-charts-drawn", "3");
})();
