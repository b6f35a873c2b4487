// The playground: start a run of the chosen workflow, or attach to a session's events, and show them as they come.
// A run is POST /api/v1/workflows/{name}/runs with stream: true; its answer is server-sent events, read here from
// the fetch body (EventSource can only GET). Once the session id is known it goes into the address
// (/playground?session=ID), and that page reads GET /api/v1/sessions/{id}/events: every event from the run's start,
// then the live ones. A reload or a second tab shows the same stream; closing the tab never stops the run.
// Human input: an `input_request` event shows an answer box until the next event; POST .../input answers it.
// Every string from the run goes in with textContent, or through window.autoqwenMarkdown (DOMPurify), never as HTML.
"use strict";

(function () {
  const stream = document.getElementById("stream");
  if (!stream) return;
  const form = document.getElementById("run-form");
  const messages = document.getElementById("messages");
  const summary = document.getElementById("summary");
  const status = document.getElementById("status") || document.createElement("span");
  const runButton = document.getElementById("run");
  const stopButton = document.getElementById("stop");
  const IMAGE = /\.(png|jpe?g|gif|webp)$/i;
  const HINTS = {
    terminate: "The team has stopped. Write feedback to run it again with your words as its next task, " +
      "or send an empty answer to finish the run.",
    always: "Your answer is this agent's message to the team (an empty answer is sent as it is).",
  };
  let sessionId = null;
  let live = false;
  let reading = null; // the AbortController of the stream this page reads
  let lastTime = null;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function asText(content) {
    return typeof content === "string" ? content : JSON.stringify(content, null, 2);
  }

  function markdown(text) {
    const div = el("div", "text md md-rendered");
    if (window.autoqwenMarkdown) div.appendChild(window.autoqwenMarkdown(text));
    else div.textContent = text;
    return div;
  }

  function setLive(on) {
    live = on;
    if (runButton) runButton.disabled = on;
    if (stopButton) stopButton.disabled = !on || !sessionId;
  }

  function fileUrl(path) {
    const parts = String(path).split("/").map(encodeURIComponent).join("/");
    return "/sessions/" + encodeURIComponent(sessionId) + "/files/" + parts;
  }

  function meta(data) {
    const facts = [];
    const tokens = (data.prompt_tokens || 0) + (data.completion_tokens || 0);
    if (tokens) facts.push(data.prompt_tokens + " + " + data.completion_tokens + " tokens");
    const when = data.created_at ? new Date(data.created_at) : null;
    if (when && !isNaN(when)) {
      let text = when.toLocaleTimeString();
      if (lastTime !== null) text += " (+" + ((when - lastTime) / 1000).toFixed(1) + " s)";
      lastTime = when;
      facts.push(text);
    }
    return el("span", "meta", facts.join(" · "));
  }

  function showFiles(article, files) {
    for (const file of files || []) {
      const link = el("a", "file", file.path);
      link.href = fileUrl(file.path);
      link.target = "_blank";
      link.rel = "noopener";
      if (IMAGE.test(file.path)) {
        const figure = el("figure", "produced");
        const image = el("img");
        image.src = link.href;
        image.alt = file.path;
        image.loading = "lazy";
        figure.appendChild(image);
        const caption = el("figcaption");
        caption.appendChild(link);
        figure.appendChild(caption);
        article.appendChild(figure);
      } else {
        article.appendChild(link);
      }
    }
  }

  function showMessage(kind, data) {
    const article = el("article", "message " + (data.type || kind));
    const header = el("header");
    header.appendChild(el("strong", "source", data.source || ""));
    header.appendChild(document.createTextNode(" "));
    header.appendChild(el("span", "kind", data.type || kind));
    header.appendChild(document.createTextNode(" "));
    header.appendChild(meta(data));
    article.appendChild(header);
    const items = Array.isArray(data.content) ? data.content : null;
    if (kind === "tool_call" && items) {
      for (const call of items) {
        const div = el("div", "call", "→ " + (call.name || ""));
        div.appendChild(el("pre", "", asText(call.arguments || "")));
        article.appendChild(div);
      }
    } else if (kind === "tool_result" && items) {
      for (const result of items) {
        const details = el("details");
        const label = "result of " + (result.name || result.call_id || "a tool") + (result.is_error ? " (error)" : "");
        details.appendChild(el("summary", "", label));
        details.appendChild(el("pre", "", asText(result.content)));
        article.appendChild(details);
      }
      showFiles(article, data.files);
    } else if (typeof data.content === "string") {
      article.appendChild(markdown(data.content));
    } else {
      article.appendChild(el("pre", "", asText(data.content)));
    }
    messages.appendChild(article);
  }

  function clearInputRequest() {
    const box = document.getElementById("input-request");
    if (box) box.remove();
  }

  function showInputRequest(data) {
    clearInputRequest();
    const article = el("article", "message input-request");
    article.id = "input-request";
    const header = el("header");
    header.appendChild(el("strong", "source", "you"));
    header.appendChild(document.createTextNode(" "));
    header.appendChild(el("span", "kind", "human input: " + (data.human || "")));
    article.appendChild(header);
    const label = el("label", "", data.prompt || "Your answer:");
    label.htmlFor = "answer";
    article.appendChild(label);
    const answer = el("textarea");
    answer.id = "answer";
    answer.rows = 2;
    answer.setAttribute("aria-describedby", "answer-hint");
    article.appendChild(answer);
    const hint = el("p", "hint", (HINTS[data.human] || "") + " Enter sends, Shift+Enter starts a new line.");
    hint.id = "answer-hint";
    article.appendChild(hint);
    const row = el("div", "row");
    const send = el("button", "", "Send");
    send.type = "button";
    send.id = "send-answer";
    const note = el("span", "note");
    note.setAttribute("role", "status");
    row.appendChild(send);
    row.appendChild(note);
    article.appendChild(row);
    messages.appendChild(article);

    async function submit() {
      if (send.disabled) return;
      send.disabled = answer.disabled = true;
      note.textContent = "sending…";
      try {
        const response = await fetch("/api/v1/sessions/" + encodeURIComponent(sessionId) + "/input", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ request_id: data.request_id, text: answer.value }),
        });
        if (response.ok) {
          note.textContent = "sent; the run goes on…";
          return;
        }
        const error = await response.json().catch(() => ({}));
        note.textContent = "error: " + ((error.error && error.error.message) || response.statusText);
      } catch (err) {
        note.textContent = "error: " + err;
      }
      send.disabled = answer.disabled = false;
    }

    send.addEventListener("click", submit);
    answer.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit();
      }
    });
    answer.focus();
  }

  function showSummary(data) {
    summary.hidden = false;
    summary.replaceChildren();
    summary.appendChild(el("h2", "", "Summary"));
    let why = data.stop_reason || "";
    if (data.status === "finished") why = (data.by_cap ? "the turn cap" : "its termination condition") + ": " + why;
    const facts = [
      "status: " + data.status + (why ? " (" + why + ")" : ""),
      "turns: " + data.turns,
      "tokens: " + ((data.prompt_tokens || 0) + (data.completion_tokens || 0)) +
        " (" + (data.prompt_tokens || 0) + " prompt + " + (data.completion_tokens || 0) + " completion)",
      "time: " + (data.seconds || 0).toFixed(1) + " s",
    ];
    if (data.error) facts.push("error: " + data.error);
    const list = el("ul");
    for (const fact of facts) list.appendChild(el("li", "", fact));
    summary.appendChild(list);
    const link = el("a", "", "Open the session");
    link.href = "/sessions/" + encodeURIComponent(data.session_id);
    summary.appendChild(link);
  }

  // Until the run has its session, say how the model's loading goes (the first run loads it): GET /api/v1/model.
  async function watchLoading() {
    while (sessionId === null && status.textContent.endsWith("…")) {
      try {
        const model = await (await fetch("/api/v1/model", { headers: { Accept: "application/json" } })).json();
        if (sessionId !== null || !status.textContent.endsWith("…")) return;
        if (model.state === "loading" || model.state === "not loaded") {
          status.textContent = "loading the model " + (model.model || "") + ": " + (model.load_stage || model.state) + "…";
        }
      } catch (err) {
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  function handle(name, data) {
    if (name !== "input_request") clearInputRequest(); // any later event: the request was answered
    if (name === "session") {
      sessionId = data.session_id;
      status.textContent = "running (session " + sessionId + ")";
      setLive(true);
      const address = "/playground?session=" + encodeURIComponent(sessionId);
      if (location.pathname + location.search !== address) history.replaceState(null, "", address);
    } else if (name === "message" || name === "tool_call" || name === "tool_result") {
      showMessage(name, data);
    } else if (name === "input_request") {
      status.textContent = "waiting for your input (session " + sessionId + ")";
      showInputRequest(data);
    } else if (name === "end") {
      status.textContent = data.status;
      setLive(false);
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

  // Read the events a fetch of `url` answers with, in place of what the page showed.
  async function follow(url, options) {
    if (reading) reading.abort(); // stop listening to the other stream; its run goes on
    const controller = new AbortController();
    reading = controller;
    messages.replaceChildren();
    summary.hidden = true;
    lastTime = null;
    if (runButton) runButton.disabled = true; // Stop waits for the session's id
    try {
      const response = await fetch(url, Object.assign({ signal: controller.signal }, options || {}));
      if (!response.ok) {
        const error = await response.json().catch(() => ({}));
        status.textContent = "error: " + ((error.error && error.error.message) || response.statusText);
      } else {
        await readEvents(response);
      }
    } catch (err) {
      if (err.name !== "AbortError") status.textContent = "error: " + err + " (reload the page to see the run)";
    } finally {
      if (reading === controller) {
        reading = null;
        setLive(false);
      }
    }
  }

  function attach(id) {
    sessionId = id;
    status.textContent = "attaching to session " + id + "…";
    return follow("/api/v1/sessions/" + encodeURIComponent(id) + "/events");
  }

  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (live) return;
      const inputs = {};
      for (const field of form.querySelectorAll("[data-input]")) inputs[field.name] = field.value;
      const body = { inputs: inputs, stream: true, human: document.getElementById("human").value };
      const maxTurns = parseInt(document.getElementById("max-turns").value, 10);
      if (maxTurns > 0) body.max_turns = maxTurns;
      const seed = document.getElementById("seed").value.trim();
      if (seed !== "") body.seed = parseInt(seed, 10);
      sessionId = null;
      status.textContent = "starting…";
      watchLoading();
      follow("/api/v1/workflows/" + encodeURIComponent(form.dataset.workflow) + "/runs", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    });
  }

  if (stopButton) {
    stopButton.addEventListener("click", async function () {
      if (!sessionId) return;
      stopButton.disabled = true;
      status.textContent = "stopping…";
      await fetch("/api/v1/sessions/" + encodeURIComponent(sessionId) + "/cancel", { method: "POST" });
    });
  }

  if (stream.dataset.session) attach(stream.dataset.session);
})();
