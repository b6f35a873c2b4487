// The Skills pages: add a skill file (POST /api/v1/skills, multipart), remove one (DELETE /api/v1/skills/{name}),
// try a skill (POST /api/v1/skills/{name}/run) and show what it returned. Every string from a skill, a file or the
// server goes in with textContent, never as HTML.
"use strict";

(function () {
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function answer(response) {
    const data = await response.json().catch(() => ({}));
    if (response.ok) return { ok: true, data: data };
    const error = data.error || {};
    return { ok: false, message: error.message || response.statusText, param: error.param || null };
  }

  // A field's value as the skill expects it: text kept as typed; numbers, booleans and JSON read as JSON when
  // they parse (as `autoqwen skills run --arg` reads them), else sent as text for the server to point out.
  function fieldValue(field) {
    const text = field.value;
    if (field.dataset.widget === "text" || field.dataset.widget === "choice") return text;
    if (field.dataset.widget === "boolean") return text === "true";
    try {
      return JSON.parse(text);
    } catch (err) {
      return text;
    }
  }

  function collectArguments(form) {
    const box = document.getElementById("as-json");
    if (box && box.open) {
      const text = document.getElementById("arguments-json").value.trim();
      return text ? JSON.parse(text) : {};
    }
    const args = {};
    for (const field of form.querySelectorAll("[data-arg]")) {
      field.removeAttribute("aria-invalid");
      if (field.value !== "") args[field.dataset.arg] = fieldValue(field);
    }
    return args;
  }

  function showResult(data) {
    const section = document.getElementById("try-result");
    const files = document.getElementById("result-files");
    section.hidden = false;
    const result = data.result;
    document.getElementById("result-text").textContent =
      typeof result === "string" ? result : JSON.stringify(result, null, 2);
    files.replaceChildren();
    for (const file of data.files || []) {
      if (file.image) {
        const figure = el("figure");
        const img = el("img");
        img.src = file.url;
        img.alt = file.name;
        figure.appendChild(img);
        figure.appendChild(el("figcaption", "", file.name));
        files.appendChild(figure);
      } else {
        const link = el("a", "", file.name + " (" + file.bytes + " bytes)");
        link.href = file.url;
        link.download = file.name;
        files.appendChild(el("div")).appendChild(link);
      }
    }
  }

  const tryForm = document.getElementById("try-form");
  if (tryForm) {
    tryForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      const status = document.getElementById("try-status");
      const button = document.getElementById("run");
      let args;
      try {
        args = collectArguments(tryForm);
      } catch (err) {
        status.className = "error";
        status.textContent = "the arguments are not valid JSON: " + err.message;
        return;
      }
      const body = { arguments: args, timeout_s: parseFloat(document.getElementById("timeout").value) || 60 };
      document.getElementById("try-result").hidden = true;
      button.disabled = true;
      status.className = "";
      status.textContent = "running…";
      const started = Date.now();
      try {
        const url = "/api/v1/skills/" + encodeURIComponent(tryForm.dataset.skill) + "/run";
        const response = await fetch(url, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
        const got = await answer(response);
        if (got.ok) {
          status.textContent = "done in " + got.data.seconds.toFixed(2) + " s";
          showResult(got.data);
        } else {
          status.className = "error";
          status.textContent = "error: " + got.message;
          const name = got.param && got.param.startsWith("arguments.") ? got.param.split(".")[1] : null;
          const field = name ? tryForm.querySelector('[data-arg="' + CSS.escape(name) + '"]') : null;
          if (field) field.setAttribute("aria-invalid", "true");
        }
      } catch (err) {
        status.className = "error";
        status.textContent = "error: " + err + " after " + ((Date.now() - started) / 1000).toFixed(1) + " s";
      } finally {
        button.disabled = false;
      }
    });
  }

  const addForm = document.getElementById("add-form");
  if (addForm) {
    addForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      const status = document.getElementById("add-status");
      status.className = "";
      status.textContent = "checking…";
      try {
        const response = await fetch("/api/v1/skills", { method: "POST", body: new FormData(addForm) });
        const got = await answer(response);
        if (got.ok) {
          const verb = got.data.replaced ? "Replaced " : "Added ";
          status.textContent = verb + got.data.file + " with skills: " + got.data.skills.join(", ");
          setTimeout(function () { window.location.reload(); }, 800);
        } else {
          status.className = "error";
          status.textContent = "error: " + got.message;
        }
      } catch (err) {
        status.className = "error";
        status.textContent = "error: " + err;
      }
    });
  }

  for (const button of document.querySelectorAll("[data-remove]")) {
    button.addEventListener("click", async function () {
      const name = button.dataset.remove;
      if (!window.confirm("Delete the user skill file that defines " + name + "?")) return;
      const status = document.getElementById("remove-status");
      const response = await fetch("/api/v1/skills/" + encodeURIComponent(name), { method: "DELETE" });
      const got = await answer(response);
      if (got.ok) {
        window.location.assign(button.dataset.then || window.location.pathname);
      } else if (status) {
        status.className = "error";
        status.textContent = "error: " + got.message;
      }
    });
  }
})();
