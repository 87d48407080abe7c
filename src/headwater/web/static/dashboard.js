// Draws each chart from the Plotly figure the server rendered into the page as JSON.
document.querySelectorAll("[data-figure]").forEach(function (element) {
  var figure = JSON.parse(document.getElementById(element.dataset.figure).textContent);
  Plotly.newPlot(element, figure.data, figure.layout, { responsive: true, displaylogo: false });
});
