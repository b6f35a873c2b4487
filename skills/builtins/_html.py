"""Readable Markdown from an HTML page: keep the main content, drop page chrome, resolve links."""

from __future__ import annotations

import re
from urllib.parse import urljoin

from bs4 import BeautifulSoup, NavigableString, Tag
from markdownify import MarkdownConverter

__all__ = ["html_to_markdown"]

# Never content, wherever they sit.
_NOISE = (
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed",
    "form", "button", "input", "select", "textarea", "nav", "aside", "dialog",
)  # fmt: skip
# Site chrome when it sits outside the main content.
_CHROME = ("header", "footer")
_CHROME_ROLES = ("navigation", "banner", "contentinfo", "complementary", "search", "dialog")
# markdownify converts by recursion, a few frames per level: deeper elements become their plain text.
MAX_DEPTH = 100


def html_to_markdown(body: bytes | str, *, base_url: str, charset: str | None = None) -> str:
    """Markdown of the page's main content (`<main>`, the largest `<article>`, else `<body>`), title first."""
    if isinstance(body, bytes):
        soup = BeautifulSoup(body, "html.parser", from_encoding=charset)
    else:
        soup = BeautifulSoup(body, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    main = _main_content(soup)
    for tag in main.find_all(_NOISE):
        tag.decompose()
    for tag in main.find_all(_is_hidden_or_chrome):
        tag.decompose()
    if main.name in ("body", "[document]"):
        for tag in main.find_all(_CHROME):
            tag.decompose()
    _flatten_deep(main, MAX_DEPTH)
    for link in main.find_all("a", href=True):
        href = str(link["href"]).strip()
        if href.lower().startswith(("javascript:", "data:")):
            link.unwrap()
        else:
            link["href"] = urljoin(base_url, href)
    markdown = MarkdownConverter(
        heading_style="ATX", bullets="-", strip=["img"], escape_asterisks=False, escape_underscores=False
    ).convert_soup(main)
    markdown = re.sub(r"\[\]\([^)]*\)", "", markdown)  # icon links whose image was stripped
    markdown = re.sub(r"[ \t]+\n", "\n", markdown)
    markdown = re.sub(r"\n{3,}", "\n\n", markdown).strip()
    if title and title not in markdown[: len(title) + 200]:
        markdown = f"# {title}\n\n{markdown}".strip()
    return markdown


def _main_content(soup: BeautifulSoup) -> Tag:
    for candidate in (soup.find("main"), soup.find(lambda tag: tag.get("role") == "main")):
        if isinstance(candidate, Tag):
            return candidate
    articles = [a for a in soup.find_all("article") if isinstance(a, Tag)]
    if articles:
        return max(articles, key=lambda a: len(a.get_text(strip=True)))
    body = soup.find("body")
    return body if isinstance(body, Tag) else soup


def _is_hidden_or_chrome(tag: Tag) -> bool:
    return tag.get("role") in _CHROME_ROLES or tag.get("aria-hidden") == "true" or tag.has_attr("hidden")


def _flatten_deep(root: Tag, limit: int) -> None:
    """Replace each element nested more than `limit` levels below `root` by its text (walked without recursion)."""
    stack = [(root, 0)]
    while stack:
        tag, depth = stack.pop()
        for child in list(tag.children):
            if not isinstance(child, Tag):
                continue
            if depth + 1 >= limit:
                child.replace_with(NavigableString(" " + child.get_text(" ", strip=True) + " "))
            else:
                stack.append((child, depth + 1))
