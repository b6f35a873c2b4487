// The Sessions, Session and Gallery pages: delete, export, resume and import through the API (same origin, JSON
// errors shown as text). Everything from a session is added with textContent, never as HTML.
"use strict";

(function () {
  const notice = document.getElementById("notice");

  function say(text, kind, link) {
    if (!notice) return;
    notice.className = kind || "";
    notice.replaceChildren(document.createTextNode(text));
    if (link) {
      const a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      notice.append(" ", a);
    }
  }

  async function call(method, url, body) {
    const options = { method: method, headers: { Accept: "application/json" } };
    if (body instanceof FormData) options.body = body;
    else if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const message = data && data.error ? data.error.message : response.status + " " + response.statusText;
      throw new Error(message);
    }
    return data;
  }

  const sessionUrl = (id) => "/api/v1/sessions/" + encodeURIComponent(id);

  async function exportSessions(ids) {
    say("Exporting " + ids.length + " session" + (ids.length === 1 ? "" : "s") + "…");
    try {
      const done = await call("POST", "/api/v1/gallery/export", { session_ids: ids });
      const link = done.data.length === 1
        ? { href: "/gallery/static/" + done.data[0].href, text: "open it" }
        : { href: "/gallery", text: "open the gallery" };
      say("Exported " + done.data.length + " to the gallery:", "ok", link);
    } catch (error) {
      say("Export failed: " + error.message, "error");
    }
  }

  // The Sessions list: pick rows, then delete or export them.
  const table = document.getElementById("sessions");
  if (table) {
    const boxes = () => Array.from(table.querySelectorAll("input.pick"));
    const picked = () => boxes().filter((box) => box.checked).map((box) => box.value);
    const buttons = ["delete-selected", "export-selected"].map((id) => document.getElementById(id));
    const all = document.getElementById("select-all");
    const refresh = () => {
      const count = picked().length;
      for (const button of buttons) button.disabled = count === 0;
      all.checked = count > 0 && count === boxes().length;
    };
    table.addEventListener("change", (event) => {
      if (event.target === all) for (const box of boxes()) box.checked = all.checked;
      refresh();
    });
    buttons[1].addEventListener("click", () => exportSessions(picked()));
    buttons[0].addEventListener("click", async () => {
      const ids = picked();
      const noun = ids.length === 1 ? "this session" : "these " + ids.length + " sessions";
      if (!window.confirm("Delete " + noun + ", with their messages and files?")) return;
      const failed = [];
      for (const id of ids) {
        try {
          await call("DELETE", sessionUrl(id));
          const row = table.querySelector('tr[data-session="' + CSS.escape(id) + '"]');
          if (row) row.remove();
        } catch (error) {
          failed.push(id + ": " + error.message);
        }
      }
      refresh();
      if (failed.length) say("Not deleted: " + failed.join("; "), "error");
      else say("Deleted " + ids.length + ".", "ok");
    });
    refresh();
  }

  // One session: resume, export, delete.
  const actions = document.getElementById("session-actions");
  if (actions) {
    const id = actions.dataset.session;
    document.getElementById("resume").addEventListener("click", async (event) => {
      event.target.disabled = true;
      say("Resuming…");
      try {
        await call("POST", sessionUrl(id) + "/resume", {});
        window.location.href = "/playground?session=" + encodeURIComponent(id);
      } catch (error) {
        event.target.disabled = false;
        say("Resume failed: " + error.message, "error");
      }
    });
    document.getElementById("export").addEventListener("click", () => exportSessions([id]));
    document.getElementById("delete").addEventListener("click", async () => {
      if (!window.confirm("Delete this session, with its messages and files?")) return;
      try {
        await call("DELETE", sessionUrl(id));
        window.location.href = "/sessions";
      } catch (error) {
        say("Delete failed: " + error.message, "error");
      }
    });
  }

  // The Gallery: import an exported session (files, or a folder with each file named by its path in it).
  const form = document.getElementById("import-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = new FormData();
      for (const file of document.getElementById("import-files").files) body.append("file", file, file.name);
      for (const file of document.getElementById("import-folder").files) {
        body.append("file", file, file.webkitRelativePath || file.name);
      }
      if (!body.has("file")) {
        say("Pick a session.json, or the folder of an exported session.", "error");
        return;
      }
      if (document.getElementById("import-replace").checked) body.append("replace", "true");
      say("Importing…");
      try {
        const session = await call("POST", "/api/v1/gallery/import", body);
        say("Imported " + session.title + " (" + session.message_count + " messages):", "ok",
          { href: "/sessions/" + encodeURIComponent(session.id), text: "open it" });
        form.reset();
      } catch (error) {
        say("Import failed: " + error.message, "error");
      }
    });
  }
})();
