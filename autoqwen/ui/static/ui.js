// The playground: start a run of the chosen workflow and show its events as they arrive.
// The run is POST /api/v1/workflows/{name}/runs with stream: true; its answer is server-sent events, read here
// from the fetch body (EventSource can only GET). Every string from the run goes in with textContent, never as HTML.
"use strict";

(function () {
  const form = document.getElementById("run-form");
  if (!form) return;
  const messages = document.getElementById("messages");
  const summary = document.getElementById("summary");
  const status = document.getElementById("status");
  const runButton = document.getElementById("run");
  const stopButton = document.getElementById("stop");
  let sessionId = null;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function asText(content) {
    return typeof content === "string" ? content : JSON.stringify(content, null, 2);
  }

  function showMessage(kind, data) {
    const article = el("article", "message " + (data.type || kind));
    const header = el("header");
    header.appendChild(el("strong", "source", data.source || ""));
    header.appendChild(document.createTextNode(" "));
    header.appendChild(el("span", "kind", data.type || kind));
    article.appendChild(header);
    const items = Array.isArray(data.content) ? data.content : null;
    if (kind === "tool_call" && items) {
      for (const call of items) {
        const div = el("div", "call", "→ " + (call.name || ""));
        div.appendChild(el("pre", "", call.arguments || ""));
        article.appendChild(div);
      }
    } else if (kind === "tool_result" && items) {
      for (const result of items) {
        const details = el("details");
        details.appendChild(el("summary", "", "result of " + (result.name || result.call_id || "a tool")));
        details.appendChild(el("pre", "", asText(result.content)));
        article.appendChild(details);
      }
    } else {
      article.appendChild(el("div", "text", asText(data.content)));
    }
    messages.appendChild(article);
  }

  function showSummary(data) {
    summary.hidden = false;
    summary.replaceChildren();
    summary.appendChild(el("h2", "", "Summary"));
    const facts = [
      "status: " + data.status + (data.stop_reason ? " (" + data.stop_reason + ")" : ""),
      "turns: " + data.turns,
      "tokens: " + ((data.prompt_tokens || 0) + (data.completion_tokens || 0)),
      "time: " + (data.seconds || 0).toFixed(1) + " s",
    ];
    const list = el("ul");
    for (const fact of facts) list.appendChild(el("li", "", fact));
    summary.appendChild(list);
    const link = el("a", "", "Open the session");
    link.href = "/sessions/" + encodeURIComponent(data.session_id);
    summary.appendChild(link);
  }

  function handle(name, data) {
    if (name === "session") {
      sessionId = data.session_id;
      status.textContent = "running (session " + sessionId + ")";
      stopButton.disabled = false;
    } else if (name === "message" || name === "tool_call" || name === "tool_result") {
      showMessage(name, data);
    } else if (name === "end") {
      status.textContent = data.status;
      showSummary(data);
    } else if (name === "error") {
      status.textContent = "error: " + ((data.error && data.error.message) || "the run failed");
    }
  }

  async function readEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length) handle(name, JSON.parse(data.join("\n")));
      }
    }
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const inputs = {};
    for (const field of form.querySelectorAll("[data-input]")) inputs[field.name] = field.value;
    const body = { inputs: inputs, stream: true };
    const maxTurns = parseInt(document.getElementById("max-turns").value, 10);
    if (maxTurns > 0) body.max_turns = maxTurns;
    messages.replaceChildren();
    summary.hidden = true;
    sessionId = null;
    runButton.disabled = true;
    status.textContent = "starting (the model loads on the first run)…";
    try {
      const url = "/api/v1/workflows/" + encodeURIComponent(form.dataset.workflow) + "/runs";
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        const error = await response.json().catch(() => ({}));
        status.textContent = "error: " + ((error.error && error.error.message) || response.statusText);
      } else {
        await readEvents(response);
      }
    } catch (err) {
      status.textContent = "error: " + err;
    } finally {
      runButton.disabled = false;
      stopButton.disabled = true;
    }
  });

  stopButton.addEventListener("click", async function () {
    if (!sessionId) return;
    stopButton.disabled = true;
    status.textContent = "stopping…";
    await fetch("/api/v1/sessions/" + encodeURIComponent(sessionId) + "/cancel", { method: "POST" });
  });
})();
