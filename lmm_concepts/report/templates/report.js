(function () {
  var button = document.getElementById("toggle-all");
  if (!button) { return; }
  button.addEventListener("click", function () {
    var all = document.querySelectorAll("section.method details");
    var open = button.textContent === "expand all";
    all.forEach(function (d) { d.open = open; });
    button.textContent = open ? "collapse all" : "expand all";
  });
  document.body.setAttribute("data-report-ready", "1");
})();
