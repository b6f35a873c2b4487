// The workflow editor (/workflows/new, /workflows/NAME/edit) and the Workflows pages' Duplicate and Delete.
// The editor is a textarea with a line-number gutter: POST /api/v1/workflows/validate checks the YAML as you type
// (debounced) and on save, and each problem shows at its line (gutter marker, and a list: click one to go to its
// line). Save is PUT /api/v1/workflows/NAME (Ctrl+S too). The form view reads its fields from the YAML
// (POST .../parse-form) and writes each change back into it (POST .../form), so both views edit the same text.
// Every string from a file or the server goes in with textContent, never as HTML.
"use strict";

(function () {
  const API = "/api/v1/workflows";

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function call(method, url, body, headers) {
    const options = { method: method, headers: Object.assign({}, headers || {}) };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, options);
    } catch (err) {
      return { ok: false, status: 0, data: {}, message: "the UI server cannot be reached (" + err.message + ")" };
    }
    const data = await response.json().catch(() => ({}));
    const error = data.error || {};
    return { ok: response.ok, status: response.status, data: data, message: error.message || response.statusText };
  }

  function say(node, text, bad) {
    if (!node) return;
    node.textContent = text;
    node.classList.toggle("error", Boolean(bad));
  }

  // The list and a workflow's page: Duplicate (then edit the copy) and Delete.
  function listActions() {
    const status = document.getElementById("list-status");
    for (const form of document.querySelectorAll("form.duplicate-form")) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const field = form.elements.new_name;
        const newName = field.value.trim();
        const url = API + "/" + encodeURIComponent(form.dataset.source) + "/duplicate";
        const answer = await call("POST", url, { new_name: newName });
        if (answer.ok) {
          location.href = "/workflows/" + encodeURIComponent(newName) + "/edit";
          return;
        }
        field.setAttribute("aria-invalid", "true");
        say(status, "Not copied: " + answer.message, true);
        field.focus();
      });
    }
    for (const button of document.querySelectorAll("button[data-delete]")) {
      button.addEventListener("click", async () => {
        const name = button.dataset.delete;
        if (!window.confirm("Delete the workflow " + name + "? Its file leaves your workflows folder.")) return;
        const answer = await call("DELETE", API + "/" + encodeURIComponent(name));
        if (!answer.ok) {
          say(status, "Not deleted: " + answer.message, true);
          return;
        }
        if (button.dataset.then) {
          location.href = button.dataset.then;
          return;
        }
        const row = button.closest("tr");
        if (row) row.remove();
        say(status, "Deleted " + name + ".");
      });
    }
  }

  function editor() {
    const root = document.getElementById("editor");
    if (!root) return;
    const data = JSON.parse(document.getElementById("editor-data").textContent);
    const name = root.dataset.name || null;
    const etag = root.dataset.etag || null;
    const text = document.getElementById("yaml");
    const gutter = document.getElementById("gutter");
    const list = document.getElementById("problems");
    const checked = document.getElementById("problems-status");
    const saveStatus = document.getElementById("save-status");
    const saveButton = document.getElementById("save");
    const yamlView = document.getElementById("yaml-view");
    const formView = document.getElementById("form-view");
    const agentsBox = document.getElementById("f-agents");
    let problems = [];
    let gutterKey = "";
    let checkSeq = 0;
    let checkTimer = null;
    let formSeq = 0;
    let formTimer = null;
    let baseYaml = null; // the YAML the form was read from: every form change is applied to it
    let agentSeq = 0;
    let dirty = false;
    let saving = false;

    function renderGutter() {
      const count = text.value.split("\n").length;
      const bad = new Map();
      for (const p of problems) {
        if (p.line) bad.set(p.line, (bad.has(p.line) ? bad.get(p.line) + "\n" : "") + p.message);
      }
      const key = count + "|" + JSON.stringify([...bad]);
      if (key !== gutterKey) {
        gutterKey = key;
        const rows = document.createDocumentFragment();
        for (let i = 1; i <= count; i++) {
          const row = el("div", bad.has(i) ? "bad" : "", String(i));
          if (bad.has(i)) row.title = bad.get(i);
          rows.appendChild(row);
        }
        gutter.replaceChildren(rows);
      }
      gutter.scrollTop = text.scrollTop;
    }

    function describe(p) {
      return (p.line ? "Line " + p.line : "File") + (p.field ? " · " + p.field : "") + ": " + p.message;
    }

    function showProblems(found, note) {
      problems = found;
      list.replaceChildren();
      for (const p of found) {
        const item = el("li");
        if (p.line) {
          const button = el("button", "link problem", describe(p));
          button.type = "button";
          button.addEventListener("click", () => goTo(p.line));
          item.appendChild(button);
        } else {
          item.appendChild(el("span", "problem", describe(p)));
        }
        list.appendChild(item);
      }
      say(checked, note, found.length > 0);
      renderGutter();
      markFields(found);
    }

    async function goTo(line) {
      if (!(await showYaml())) return;
      const lines = text.value.split("\n");
      let start = 0;
      for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
      text.focus();
      text.setSelectionRange(start, start + (lines[line - 1] || "").length);
      const height = parseFloat(getComputedStyle(text).lineHeight) || 20;
      text.scrollTop = Math.max(0, (line - 1) * height - text.clientHeight / 3);
      renderGutter();
    }

    async function check() {
      const seq = ++checkSeq;
      const body = { yaml: text.value };
      if (name) body.name = name;
      say(checked, "Checking…");
      const answer = await call("POST", API + "/validate", body);
      if (seq !== checkSeq) return null; // a newer check is on its way
      if (!answer.ok) {
        showProblems([{ line: null, field: null, message: answer.message }], "Cannot check the YAML.");
        return null;
      }
      const result = answer.data;
      if (!result.ok) {
        const n = result.errors.length;
        showProblems(result.errors, n + (n === 1 ? " problem." : " problems."));
        return result;
      }
      const spec = result.spec;
      let note = "No problems: " + spec.name + ", " + spec.agents.length + " agent" +
        (spec.agents.length === 1 ? "" : "s") + ", " + spec.team + " team.";
      if (!name && result.taken) {
        note += " A " + result.taken + " workflow is already named " + spec.name + ": change the name to save it.";
      }
      showProblems([], note);
      return result;
    }

    function changed() {
      dirty = true;
      renderGutter();
      clearTimeout(checkTimer);
      checkTimer = setTimeout(check, 400);
    }

    function insert(snippet) {
      if (!document.execCommand || !document.execCommand("insertText", false, snippet)) {
        text.setRangeText(snippet, text.selectionStart, text.selectionEnd, "end");
        changed();
      }
    }

    // Enter keeps the line's indent, one level deeper after `key:` or inside a `- ` item.
    function onKey(event) {
      if (event.key !== "Enter" || event.shiftKey || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.isComposing) return;
      const before = text.value.slice(0, text.selectionStart);
      const line = before.slice(before.lastIndexOf("\n") + 1);
      let indent = line.match(/^ */)[0];
      if (/^ *- /.test(line)) indent += "  ";
      if (/:\s*$/.test(line)) indent += "  ";
      if (!indent) return;
      event.preventDefault();
      insert("\n" + indent);
    }

    async function save() {
      if (saving) return;
      saving = true;
      saveButton.disabled = true;
      try {
        say(saveStatus, "Saving…");
        if (!(await flushForm())) return;
        clearTimeout(checkTimer);
        const result = await check();
        if (!result) {
          say(saveStatus, "Not saved: the check did not finish; try again.", true);
          return;
        }
        if (!result.ok) {
          say(saveStatus, "Not saved: fix the problems listed below first.", true);
          return;
        }
        const target = name || result.spec.name;
        const headers = {};
        const body = { yaml: text.value, overwrite: false };
        if (name && etag) headers["If-Match"] = etag;
        else if (name) body.overwrite = true;
        const answer = await call("PUT", API + "/" + encodeURIComponent(target), body, headers);
        if (answer.ok) {
          dirty = false;
          say(saveStatus, "Saved.");
          location.href = "/workflows/" + encodeURIComponent(target) + "?saved=1";
          return;
        }
        if (answer.data.errors) showProblems(answer.data.errors, answer.data.errors.length + " problem(s).");
        say(saveStatus, "Not saved: " + answer.message, true);
      } finally {
        saving = false;
        saveButton.disabled = false;
      }
    }

    // The form view.
    function field(key) {
      return formView.querySelector('[data-key="' + key + '"]');
    }

    function setValue(input, value) {
      const shown = value === null || value === undefined ? "" : String(value);
      if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === shown)) {
        input.appendChild(el("option", "", shown)).value = shown; // a value the YAML has: shown, kept
      }
      input.value = shown;
    }

    function option(select, value, label) {
      const item = el("option", "", label || value);
      item.value = value;
      select.appendChild(item);
    }

    function labelled(row, key, label, control) {
      control.id = row.dataset.prefix + key;
      control.dataset.field = key;
      const tag = el("label", "", label);
      tag.htmlFor = control.id;
      return [tag, control];
    }

    function agentRow(agent) {
      const row = el("fieldset", "agent");
      row.dataset.prefix = "a" + agentSeq++ + "-";
      row.agent = agent;
      const legend = el("legend", "", agent.editable ? "Agent" : "Agent (kept as written)");
      row.appendChild(legend);
      if (!agent.editable) {
        row.appendChild(el("p", "muted", agent.label + ": edit it in the YAML view."));
      } else {
        const grid = el("div", "grid");
        const nameInput = el("input");
        nameInput.spellcheck = false;
        nameInput.autocomplete = "off";
        nameInput.value = agent.name;
        const kind = el("select");
        for (const k of data.agent_kinds) option(kind, k);
        setValue(kind, agent.kind);
        const about = el("input");
        about.value = agent.description;
        grid.append(...labelled(row, "name", "Name", nameInput), ...labelled(row, "kind", "Kind", kind));
        grid.append(...labelled(row, "description", "Description", about));
        const assistant = el("div", "grid assistant-only");
        const message = el("textarea");
        message.rows = 4;
        message.value = agent.system_message;
        assistant.append(...labelled(row, "system_message", "System message", message));
        const skills = el("fieldset", "skills");
        skills.dataset.field = "skills";
        skills.appendChild(el("legend", "", "Skills"));
        const names = [...agent.skills, ...data.skills.filter((s) => !agent.skills.includes(s))];
        names.forEach((skill, j) => {
          const box = el("input");
          box.type = "checkbox";
          box.value = skill;
          box.id = row.dataset.prefix + "skill-" + j;
          box.checked = agent.skills.includes(skill);
          const tag = el("label", "check", data.skills.includes(skill) ? skill : skill + " (not installed)");
          tag.htmlFor = box.id;
          tag.prepend(box);
          skills.appendChild(tag);
        });
        if (!names.length) skills.appendChild(el("p", "muted", "No skills installed."));
        assistant.append(el("span"), skills);
        const toggle = () => (assistant.hidden = kind.value !== "assistant");
        kind.addEventListener("change", toggle);
        toggle();
        row.append(grid, assistant);
      }
      const remove = el("button", "secondary", "Remove agent");
      remove.type = "button";
      remove.addEventListener("click", () => {
        const next = row.nextElementSibling || row.previousElementSibling;
        row.remove();
        numberAgents();
        formChanged();
        (next ? next.querySelector("input, select, textarea, button") : document.getElementById("add-agent")).focus();
      });
      row.appendChild(remove);
      return row;
    }

    function numberAgents() {
      [...agentsBox.children].forEach((row, i) => {
        const legend = row.querySelector("legend");
        legend.textContent = "Agent " + (i + 1) + (row.agent.editable ? "" : " (kept as written)");
      });
    }

    function fillForm(form) {
      for (const input of formView.querySelectorAll("[data-key]")) setValue(input, form[input.dataset.key]);
      agentSeq = 0;
      agentsBox.replaceChildren(...form.agents.map(agentRow));
      numberAgents();
      modelFields();
    }

    function number(input) {
      const raw = input.value.trim();
      if (raw === "") return null;
      const value = Number(raw);
      return Number.isInteger(value) ? value : raw; // not a whole number: the server names the field
    }

    function readForm() {
      const form = { agents: [] };
      for (const input of formView.querySelectorAll("[data-key]")) {
        form[input.dataset.key] = input.type === "number" ? number(input) : input.value;
      }
      for (const row of agentsBox.children) {
        const agent = row.agent;
        if (!agent.editable) {
          form.agents.push(agent);
          continue;
        }
        const value = (key) => row.querySelector('[data-field="' + key + '"]').value;
        const skills = [...row.querySelectorAll(".skills input:checked")].map((box) => box.value);
        form.agents.push({
          source: agent.source, editable: true, label: agent.label, name: value("name"), kind: value("kind"),
          description: value("description"), system_message: value("system_message"), skills: skills,
        });
      }
      return form;
    }

    function modelFields() {
      const external = field("model_kind").value === "external";
      for (const node of formView.querySelectorAll(".external-only")) node.hidden = !external;
    }

    // A problem's field (agents[1].system_message) marks its control in the form.
    function markFields(found) {
      for (const node of formView.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
      const keys = {
        "name": "name", "description": "description", "task": "task", "team.type": "team_type",
        "team.max_turns": "max_turns", "termination.text": "termination_text",
        "termination.max_messages": "max_messages", "model": "model", "model.model": "model",
        "model.base_url": "base_url", "model.kind": "model_kind",
      };
      for (const p of found) {
        const agent = /^agents\[(\d+)\]\.(\w+)/.exec(p.field || "");
        let node = null;
        if (agent && agentsBox.children[Number(agent[1])]) {
          node = agentsBox.children[Number(agent[1])].querySelector('[data-field="' + agent[2] + '"]');
        } else if (keys[p.field]) {
          node = field(keys[p.field]);
        }
        if (node) node.setAttribute("aria-invalid", "true");
      }
    }

    async function applyForm() {
      const seq = ++formSeq;
      const answer = await call("POST", API + "/form", { yaml: baseYaml, form: readForm() });
      if (seq !== formSeq) return true; // a newer change is being applied
      if (!answer.ok) {
        if (answer.data.errors) showProblems(answer.data.errors, "The form could not be applied.");
        say(saveStatus, "The form could not be applied: " + answer.message, true);
        return false;
      }
      if (answer.data.yaml !== text.value) {
        text.value = answer.data.yaml;
        changed();
      }
      return true;
    }

    function formChanged() {
      dirty = true;
      clearTimeout(formTimer);
      formTimer = setTimeout(applyForm, 300);
    }

    async function flushForm() {
      if (formView.hidden) return true;
      clearTimeout(formTimer);
      return applyForm();
    }

    function pressed(showingForm) {
      document.getElementById("view-yaml").setAttribute("aria-pressed", String(!showingForm));
      document.getElementById("view-form").setAttribute("aria-pressed", String(showingForm));
    }

    async function showForm() {
      if (!formView.hidden) return;
      const answer = await call("POST", API + "/parse-form", { yaml: text.value });
      if (!answer.ok) {
        if (answer.data.errors) showProblems(answer.data.errors, "The form needs YAML it can read: fix this first.");
        say(saveStatus, "Cannot show the form: " + answer.message, true);
        return;
      }
      say(saveStatus, "");
      baseYaml = text.value;
      fillForm(answer.data.form);
      yamlView.hidden = true;
      formView.hidden = false;
      pressed(true);
      markFields(problems);
      field("name").focus();
    }

    async function showYaml() {
      if (formView.hidden) return true;
      if (!(await flushForm())) return false;
      formView.hidden = true;
      yamlView.hidden = false;
      pressed(false);
      renderGutter();
      return true;
    }

    text.addEventListener("input", changed);
    text.addEventListener("scroll", () => (gutter.scrollTop = text.scrollTop));
    text.addEventListener("keydown", onKey);
    formView.addEventListener("input", formChanged);
    formView.addEventListener("change", formChanged);
    formView.addEventListener("submit", (event) => event.preventDefault());
    field("model_kind").addEventListener("change", modelFields);
    document.getElementById("add-agent").addEventListener("click", () => {
      const agent = { source: null, editable: true, label: "", name: "", kind: "assistant", description: "",
        system_message: "", skills: [] };
      const row = agentRow(agent);
      agentsBox.appendChild(row);
      numberAgents();
      row.querySelector("input").focus();
      formChanged();
    });
    document.getElementById("view-form").addEventListener("click", showForm);
    document.getElementById("view-yaml").addEventListener("click", async () => {
      if (await showYaml()) text.focus();
    });
    saveButton.addEventListener("click", save);
    document.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === "s") {
        event.preventDefault();
        save();
      }
    });
    window.addEventListener("beforeunload", (event) => {
      if (dirty) event.preventDefault();
    });
    renderGutter();
    check();
  }

  listActions();
  editor();
})();
