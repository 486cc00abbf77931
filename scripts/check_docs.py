#!/usr/bin/env python3
"""Checks the built API reference (make test-docs): every page loads in a headless browser,
and no link inside the site is broken.

    scripts/check_docs.py [SITE]          (default build/docs)

Links: every href and src of every HTML page under SITE that is not an external URL must
name a file inside SITE, and its #anchor, if any, an id (or a name) in that page. Pages:
each is opened in one headless Chromium, driven over its DevTools pipe (one browser for all
pages, which is what keeps this fast); a page fails if the navigation fails, if a script
throws while it loads, or if its body comes out empty. The browser is ``chromium`` on PATH
(or $CHROMIUM); a missing browser is an error, never a skip.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

EXTERNAL = ("http", "https", "mailto", "javascript", "data", "ftp", "tel")


class Page(HTMLParser):
    """The links and the anchors of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links, self.anchors = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.anchors.add(attrs[key])
        for key in ("href", "src"):
            value = attrs.get(key)
            if value is not None and not (tag == "link" and attrs.get("rel") in ("preconnect", "dns-prefetch")):
                self.links.append((tag, key, value.strip()))


def parse(path, cache):
    if path not in cache:
        page = Page()
        with open(path, encoding="utf-8", errors="replace") as f:
            page.feed(f.read())
        cache[path] = page
    return cache[path]


def has_anchor(page, fragment):
    """Whether a page has the anchor: an id as written or percent-decoded (rustdoc's ids of
    generic impls are percent-encoded), or a range of source lines `N-M` (rustdoc's source
    pages have an id per line; its script highlights the range)."""
    if fragment in page.anchors or unquote(fragment) in page.anchors:
        return True
    lines = fragment.split("-")
    return len(lines) == 2 and all(n.isdigit() and n in page.anchors for n in lines)


def check_links(site, pages):
    """Returns a list of broken links, as 'page: link (why)'."""
    cache, broken = {}, []
    for page_path in pages:
        page = parse(page_path, cache)
        for tag, key, link in page.links:
            url = urlsplit(link)
            if url.scheme in EXTERNAL or link.startswith("//"):
                continue
            if url.scheme:  # file: or something unexpected
                broken.append(f"{page_path}: {link} (not a relative link)")
                continue
            target = page_path if not url.path else os.path.normpath(
                os.path.join(os.path.dirname(page_path), unquote(url.path)))
            if os.path.commonpath([target, site]) != site:
                broken.append(f"{page_path}: {link} (outside the site)")
                continue
            if os.path.isdir(target):
                target = os.path.join(target, "index.html")
            if not os.path.isfile(target):
                broken.append(f"{page_path}: {link} (no such file)")
                continue
            if url.fragment and target.endswith(".html") and not has_anchor(parse(target, cache), url.fragment):
                broken.append(f"{page_path}: {link} (no anchor #{unquote(url.fragment)})")
    return broken


class Browser:
    """One headless Chromium, driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    def __init__(self, exe):
        self.profile = tempfile.mkdtemp(prefix="era-docs-chromium.")
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # the child's fds 3 (commands in) and 4 (replies out)
        def child_fds():  # above 4 first, so that dup2 makes new, inheritable fds 3 and 4
            high_r, high_w = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--disable-extensions", "--allow-file-access-from-files",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=child_fds, close_fds=False)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.buffer, self.next_id, self.events = b"", 0, []

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("the browser did not answer in time")
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser exited")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, session=None, timeout=30, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method, session, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 (it may be gone already)
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def check_pages(pages, exe):
    """Opens every page; returns a list of failures, as 'page: why'."""
    browser = Browser(exe)
    failures = []
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        browser.call("Page.enable", session)
        browser.call("Runtime.enable", session)
        for path in pages:
            browser.events.clear()
            result = browser.call("Page.navigate", session, url="file://" + path)
            if result.get("errorText"):
                failures.append(f"{path}: {result['errorText']}")
                continue
            browser.wait_event("Page.loadEventFired", session)
            exceptions = [e for e in browser.events
                          if e.get("method") == "Runtime.exceptionThrown" and e.get("sessionId") == session]
            for e in exceptions:
                details = e["params"]["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                failures.append(f"{path}: script error: {text}")
            body = browser.call("Runtime.evaluate", session,
                                expression="document.body ? document.body.innerText.trim().length : -1")
            if body["result"].get("value", 0) <= 0:
                failures.append(f"{path}: empty page")
    finally:
        browser.close()
    return failures


def main():
    site = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/docs")
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not exe:
        sys.exit("check_docs: no chromium on PATH (scripts/bootstrap.sh --docs installs it)")
    pages = sorted(os.path.join(d, f) for d, _, fs in os.walk(site) for f in fs if f.endswith(".html"))
    if not any(p == os.path.join(site, "index.html") for p in pages):
        sys.exit(f"check_docs: {site}/index.html is missing: run make docs")
    start = time.monotonic()
    problems = check_links(site, pages)
    links_s = time.monotonic() - start
    problems += check_pages(pages, exe)
    for problem in problems:
        print("check_docs:", os.path.relpath(problem, os.getcwd()) if problem.startswith("/") else problem)
    print(f"check_docs: {len(pages)} pages, links checked in {links_s:.1f} s, pages loaded in "
          f"{time.monotonic() - start - links_s:.1f} s: {'FAILED' if problems else 'ok'}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
