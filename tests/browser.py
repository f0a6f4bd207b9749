"""Headless Chromium for the browser tests: load a page, let its script run, return the DOM it drew.

The page reports on ``<body>``: ``data-rendered="ok"`` when its script finished, ``data-errors`` for any
script error (fluxflow's report page does both)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import pytest

CHROMIUM = shutil.which("chromium")
NO_CHROMIUM = "Chromium is not installed (Debian package chromium; .ci/run installs it when run as root)"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, attrs, parent, [], ""

    def find_all(self, tag: str, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if child.tag == tag and (cls is None or cls in child.attrs.get("class", "").split()):
                found.append(child)
            found += child.find_all(tag, cls)
        return found


class Tree(HTMLParser):
    """The dumped DOM as a tree of :class:`Node` (the standard library has no DOM for HTML)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
            "wbr"}

    def __init__(self, page: str):
        super().__init__()
        self.root = self.node = Node("#document", {}, None)
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self.node)
        self.node.children.append(node)
        if tag not in self.VOID:
            self.node = node

    def handle_startendtag(self, tag, attrs):
        self.node.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.node))

    def handle_endtag(self, tag):
        node = self.node
        while node.parent is not None and node.tag != tag:
            node = node.parent
        if node.parent is not None:
            self.node = node.parent

    def handle_data(self, data):
        self.node.text += data


def chromium(url: str, profile, *args: str) -> Node:
    """Load ``url`` in headless Chromium (a fresh profile) and return the DOM after the page's script ran."""
    run = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, "--dump-dom", url],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    return Tree(run.stdout).root


def assert_rendered(dom: Node) -> Node:
    (body,) = dom.find_all("body")
    assert "data-errors" not in body.attrs, body.attrs["data-errors"]
    assert body.attrs.get("data-rendered") == "ok"
    return body
