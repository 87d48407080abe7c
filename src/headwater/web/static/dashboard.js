// Draws each chart from the Plotly figure the server rendered into the page as JSON.
document.querySelectorAll("[data-figure]").forEach(function (element) {
  var figure = JSON.parse(document.getElementById(element.dataset.figure).textContent);
  Plotly.newPlot(element, figure.data, figure.layout, { responsive: true, displaylogo: false });
});

// Filters left empty stay out of the URL (?region=North, not ?region=North&weeks_from=&weeks_to=).
// Without JavaScript the form works the same: the server reads an empty value as "no filter".
document.querySelectorAll("form.filters").forEach(function (form) {
  var fields = form.querySelectorAll("input[name], select[name]");
  form.addEventListener("submit", function () {
    fields.forEach(function (field) {
      if (field.value === "") field.disabled = true;
    });
  });
  // Coming back with the Back button shows the page as it was left: enable the fields again.
  window.addEventListener("pageshow", function () {
    fields.forEach(function (field) { field.disabled = false; });
  });
});
