(function () {
  var button = document.getElementById("toggle-all");
  if (button) {
    button.addEventListener("click", function () {
      var all = document.querySelectorAll("section.method details");
      var open = button.textContent === "expand all";
      all.forEach(function (d) { d.open = open; });
      button.textContent = open ? "collapse all" : "expand all";
    });
  }
  // concept activations along captions: recolour every token by the chosen concept (render.py: token_colour)
  function colour(value, scale) {
    var x = scale > 0 ? 0.7 * Math.max(-1, Math.min(1, value / scale)) : 0;
    return x >= 0 ? "rgba(31,119,180," + x.toFixed(2) + ")" : "rgba(214,39,40," + (-x).toFixed(2) + ")";
  }
  document.querySelectorAll("select.caption-concept").forEach(function (select) {
    var section = select.closest("section");
    var scales = JSON.parse(select.getAttribute("data-scales"));
    select.addEventListener("change", function () {
      section.querySelectorAll(".caption-view").forEach(function (view) {
        var acts = JSON.parse(view.getAttribute("data-acts"));
        var k = select.value === "top" ? Number(view.getAttribute("data-top")) : Number(select.value);
        view.querySelectorAll("span.tok").forEach(function (span, t) {
          span.style.backgroundColor = colour(acts[t][k], scales[k]);
          span.title = "#" + k + ": " + acts[t][k].toFixed(3);
        });
        view.querySelector(".shown").textContent = "#" + k;
      });
    });
  });
  document.body.setAttribute("data-report-ready", "1");
})();
