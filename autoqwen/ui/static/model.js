// The Model page: ask GET /api/v1/model every few seconds and fill in each [data-field] with textContent,
// formatted as its data-format says (the rules of model_pages.shown). "Load now" is POST /api/v1/model/load.
"use strict";

(function () {
  const root = document.getElementById("model-status");
  if (!root) return;
  const every = parseInt(root.dataset.refresh, 10) || 3000;
  const loadButton = document.getElementById("load-now");
  const loadStatus = document.getElementById("load-status");
  const updated = document.getElementById("updated");

  function lookup(data, path) {
    let value = data;
    for (const key of path.split(".")) {
      if (value === null || value === undefined) return null;
      value = value[key];
    }
    return value === undefined ? null : value;
  }

  function shown(value, format, data) {
    if (format === "stage") return data.state === "loading" && value ? "(" + value + ")" : "";
    if (format === "list") return Array.isArray(value) && value.length ? value.join(", ") : "—";
    if (value === null || value === "") return "—";
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (format === "rate") return Number(value).toFixed(1);
    if (format === "int") return Math.trunc(Number(value)).toLocaleString("en-US");
    if (format === "tokens") return Math.trunc(Number(value)).toLocaleString("en-US") + " tokens";
    if (format === "percent") return (Number(value) * 100).toFixed(0) + "%";
    if (format === "seconds") return Number(value).toFixed(2) + " s";
    if (format === "bytes") return (Number(value) / 1048576).toFixed(1) + " MiB";
    return String(value);
  }

  function show(data) {
    for (const node of root.querySelectorAll("[data-field]")) {
      const field = node.dataset.field;
      const value = lookup(data, field);
      if (field.endsWith("_error")) node.textContent = value || "";
      else node.textContent = shown(value, node.dataset.format || "text", data);
      if (field === "state") node.className = "state state-" + String(value).replace(/ /g, "-");
    }
    if (loadButton) loadButton.disabled = data.state === "loading" || data.state === "ready";
    updated.textContent = new Date().toLocaleTimeString();
  }

  async function refresh() {
    try {
      const response = await fetch("/api/v1/model", { headers: { Accept: "application/json" } });
      const data = await response.json();
      if (response.ok) show(data);
      else updated.textContent = "error: " + ((data.error && data.error.message) || response.statusText);
    } catch (err) {
      updated.textContent = "error: the UI did not answer (" + err + ")";
    }
  }

  if (loadButton) {
    loadButton.addEventListener("click", async function () {
      loadButton.disabled = true;
      loadStatus.textContent = "starting…";
      try {
        const response = await fetch("/api/v1/model/load", { method: "POST" });
        const data = await response.json();
        if (response.ok) {
          loadStatus.textContent = "";
          show(data);
        } else {
          loadStatus.textContent = "error: " + ((data.error && data.error.message) || response.statusText);
          loadButton.disabled = false;
        }
      } catch (err) {
        loadStatus.textContent = "error: " + err;
        loadButton.disabled = false;
      }
    });
  }

  setInterval(refresh, every);
})();
