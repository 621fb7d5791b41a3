// bonesr-bench leaderboard: draws the plotly figures, sorts and filters tables. No network.
(function () {
  "use strict";
  var figures = JSON.parse(document.getElementById("figures").textContent);
  var config = { responsive: true, displaylogo: false };

  function figure(path) {
    return path.split(".").reduce(function (o, k) { return o ? o[k] : undefined; }, figures);
  }
  function draw(div, path) {
    var f = figure(path);
    if (!f) { return; }
    div.setAttribute("data-figure", path);
    Plotly.react(div, f.data, f.layout, config);
  }
  document.querySelectorAll("div.plot[data-figure]").forEach(function (div) {
    draw(div, div.getAttribute("data-figure"));
  });

  // the gap chart's PSNR / SSIM switch
  document.querySelectorAll("button.switch").forEach(function (b) {
    b.addEventListener("click", function () {
      document.querySelectorAll("button.switch").forEach(function (o) { o.classList.remove("active"); });
      b.classList.add("active");
      draw(document.getElementById("gap-chart"), b.getAttribute("data-figure"));
    });
  });

  // the parameter selector of the per-specimen comparison
  var select = document.getElementById("param-select");
  if (select) {
    select.addEventListener("change", function () {
      draw(document.getElementById("param-chart"), "versus." + select.value);
    });
  }

  // sortable tables: click a header; numbers sort numerically, empty cells last
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, col) {
      th.addEventListener("click", function () {
        var numeric = th.getAttribute("data-type") === "num";
        var asc = !th.classList.contains("asc");
        table.querySelectorAll("th").forEach(function (o) { o.classList.remove("asc", "desc"); });
        th.classList.add(asc ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute("data-sort"), y = b.cells[col].getAttribute("data-sort");
          if (x === null) { x = a.cells[col].textContent; }
          if (y === null) { y = b.cells[col].textContent; }
          if (x === "" || y === "") { return (x === "") - (y === ""); }
          var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });

  // filtering the main table
  var filter = document.getElementById("filter"), refs = document.getElementById("show-refs");
  function applyFilter() {
    var q = filter.value.toLowerCase();
    document.querySelectorAll("#main-table tbody tr").forEach(function (tr) {
      var hit = tr.getAttribute("data-entry").toLowerCase().indexOf(q) >= 0;
      var ref = tr.classList.contains("reference") && !refs.checked;
      tr.style.display = hit && !ref ? "" : "none";
    });
  }
  if (filter) { filter.addEventListener("input", applyFilter); refs.addEventListener("change", applyFilter); }
})();
