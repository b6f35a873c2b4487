// Markdown for text from models and skills, made safe: window.autoqwenMarkdown(text) -> a DocumentFragment.
// Needs /static/vendor/purify.min.js and /static/vendor/marked.min.js loaded first. marked turns the text into
// HTML, with any raw HTML in it escaped (so `<script>` or `<img onerror=...>` shows as text); DOMPurify then keeps
// only the elements Markdown makes, with safe links (http, https, mailto, or on this site), which open in a new tab
// with rel=noopener. Images in the Markdown become links: a model's text never makes the browser fetch anything.
// On DOMContentLoaded, every element with class `md` is rendered in place from its textContent.
"use strict";

(function () {
  const ALLOWED_TAGS = [
    "a", "p", "br", "hr", "em", "strong", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "input",
  ];
  const ALLOWED_ATTR = ["href", "title", "start", "align", "type", "checked", "disabled"];
  const SAFE_URL = /^(?:https?:|mailto:|[/#?]|\.{0,2}\/|[^:]*$)/i;
  let configured = false;

  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  function configure() {
    if (configured) return;
    configured = true;
    window.marked.use({
      gfm: true,
      breaks: true,
      renderer: {
        // Raw HTML in a message (block or inline) is shown as the text it is.
        html: function (token) { return escapeHtml(token.text || token.raw || ""); },
        image: function (token) {
          const label = escapeHtml(token.text || token.href || "image");
          return '<a href="' + escapeHtml(token.href || "") + '">' + label + "</a>";
        },
      },
    });
    window.DOMPurify.addHook("afterSanitizeAttributes", function (node) {
      if (node.tagName === "A") {
        const href = node.getAttribute("href") || "";
        if (!SAFE_URL.test(href.trim())) node.removeAttribute("href");
        node.setAttribute("rel", "noopener noreferrer");
        node.setAttribute("target", "_blank");
      } else if (node.tagName === "INPUT" && node.getAttribute("type") !== "checkbox") {
        node.remove();  // only a task list's checkbox
      }
    });
  }

  function plain(text) {
    const fragment = document.createDocumentFragment();
    fragment.appendChild(document.createTextNode(String(text)));
    return fragment;
  }

  window.autoqwenMarkdown = function (text) {
    if (!window.marked || !window.DOMPurify) return plain(text);  // the libraries did not load: plain text
    configure();
    const html = window.marked.parse(String(text), { async: false });
    return window.DOMPurify.sanitize(html, {
      ALLOWED_TAGS: ALLOWED_TAGS,
      ALLOWED_ATTR: ALLOWED_ATTR,
      ALLOW_DATA_ATTR: false,
      RETURN_DOM_FRAGMENT: true,
    });
  };

  function renderAll() {
    for (const node of document.querySelectorAll(".md:not(.md-rendered)")) {
      node.replaceChildren(window.autoqwenMarkdown(node.textContent));
      node.classList.add("md-rendered");
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", renderAll);
  else renderAll();
})();
