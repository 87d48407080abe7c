// Operations pages: the live log of a running run, and the pipelines page while a run is queued or
// running. Plain DOM: data becomes text nodes, never markup; no inline scripts (the CSP forbids them).
"use strict";

(function () {
  var RUN_POLL_MS = 1000;
  var PIPELINES_POLL_MS = 1500;

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" }).then(function (response) {
      if (!response.ok) {
        var error = new Error("HTTP " + response.status);
        error.status = response.status;
        throw error;
      }
      return response.json();
    });
  }

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function statusBadge(status) {
    return el("span", status, "status status-" + status);
  }

  function setStatus(node, status) {
    if (!node || node.textContent === status) return;
    node.textContent = status;
    node.className = "status status-" + status;
  }

  // --- the run page -------------------------------------------------------------------------------

  // The run page's log element names its poll URL (data-poll): /api/runs/N/log of the page's
  // organisation (under /o/<slug>/ in an install with many).
  function followRun(log) {
    var after = parseInt(log.getAttribute("data-after") || "0", 10) || 0;
    var badge = document.getElementById("run-status");
    var stepsBody = document.querySelector("#steps tbody");
    var failures = 0;

    function atBottom() {
      return log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    }

    function renderSteps(steps) {
      if (!stepsBody) return;
      var rows = steps.map(function (step) {
        var tr = el("tr");
        tr.appendChild(el("td", step.name));
        var status = el("td");
        status.appendChild(statusBadge(step.status));
        tr.appendChild(status);
        tr.appendChild(el("td", step.duration, "num"));
        tr.appendChild(el("td", step.rows, "num"));
        tr.appendChild(el("td", step.error, "error"));
        return tr;
      });
      stepsBody.replaceChildren.apply(stepsBody, rows);
    }

    function poll() {
      getJSON(log.getAttribute("data-poll") + "?after=" + after)
        .then(function (data) {
          failures = 0;
          if (data.lines.length) {
            var stick = atBottom();
            var text = data.lines.map(function (line) { return line.text + "\n"; }).join("");
            log.appendChild(document.createTextNode(text));
            after = data.last_id;
            log.setAttribute("data-after", String(after));
            if (stick) log.scrollTop = log.scrollHeight;
          }
          setStatus(badge, data.run.status);
          renderSteps(data.steps);
          if (data.more) {
            window.setTimeout(poll, 0);
          } else if (data.run.finished) {
            // The run ended: the page shows its final steps, checks and error as a whole.
            log.removeAttribute("data-live");
            window.setTimeout(function () { window.location.reload(); }, 600);
          } else {
            window.setTimeout(poll, RUN_POLL_MS);
          }
        })
        .catch(function (error) {
          if (error.status === 401 || error.status === 403 || error.status === 404) return; // logged out or gone: stop
          failures += 1;
          window.setTimeout(poll, Math.min(RUN_POLL_MS * Math.pow(2, failures), 15000));
        });
    }

    window.setTimeout(poll, RUN_POLL_MS);
  }

  // --- the pipelines page ---------------------------------------------------------------------------

  function followPipelines(list) {
    var url = list.getAttribute("data-poll");
    var cards = {};
    Array.prototype.forEach.call(list.querySelectorAll("[data-pipeline]"), function (card) {
      cards[card.getAttribute("data-pipeline")] = card;
    });

    function active() {
      return Object.keys(cards).some(function (name) { return cards[name].getAttribute("data-state"); });
    }

    function renderRuns(card, runs) {
      var body = card.querySelector("tbody");
      var rows = runs.map(function (run) {
        var tr = el("tr");
        var id = el("td", null, "num");
        var link = el("a", run.id);
        link.href = run.url;
        id.appendChild(link);
        tr.appendChild(id);
        var status = el("td");
        status.appendChild(statusBadge(run.status));
        tr.appendChild(status);
        tr.appendChild(el("td", run.trigger));
        tr.appendChild(el("td", run.started));
        tr.appendChild(el("td", run.duration, "num"));
        return tr;
      });
      if (!rows.length) {
        var empty = el("tr", null, "empty-row");
        var cell = el("td", "No runs yet.");
        cell.colSpan = 5;
        empty.appendChild(cell);
        rows.push(empty);
      }
      body.replaceChildren.apply(body, rows);

      var last = card.querySelector("[data-role=last]");
      if (last && runs.length) {
        var run = runs[0];
        var a = el("a", "Run " + run.id);
        a.href = run.url;
        last.replaceChildren(a, document.createTextNode(" "), statusBadge(run.status), document.createTextNode(" "), el("span", run.started, "meta"));
      }
    }

    function renderState(card, state) {
      card.setAttribute("data-state", state || "");
      var node = card.querySelector("[data-role=state]");
      if (!node) return;
      if (state) {
        node.replaceChildren(statusBadge(state), document.createTextNode(" now"));
      } else {
        node.replaceChildren();
      }
    }

    function poll() {
      getJSON(url)
        .then(function (data) {
          data.pipelines.forEach(function (p) {
            var card = cards[p.name];
            if (!card) return;
            renderState(card, p.state);
            renderRuns(card, p.runs);
          });
          if (active()) window.setTimeout(poll, PIPELINES_POLL_MS); // idle: the rows shown are final
        })
        .catch(function (error) {
          if (error.status === 401 || error.status === 403) return;
          window.setTimeout(poll, PIPELINES_POLL_MS * 4);
        });
    }

    // Polls only while a run is queued or running in this server (e.g. just after "Run now").
    if (active()) window.setTimeout(poll, PIPELINES_POLL_MS);
  }

  function start() {
    var log = document.getElementById("run-log");
    if (log && log.hasAttribute("data-live")) followRun(log);
    var pipelines = document.getElementById("pipelines");
    if (pipelines && pipelines.hasAttribute("data-poll")) followPipelines(pipelines);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
