"""References in the documentation that can go stale, checked against what they name.

- Every ``docs/math.md#<anchor>`` cited in a tracked source or documentation file is a heading of
  docs/math.md (GitHub's anchor of it); no Markdown page cites docs/math.md by a section number
  (its sections have names, not numbers).
- The comment at the top of the Makefile names every target (README.md says it lists every
  one), and every ``make <target>`` that README.md names is a target of the Makefile.
"""

import os
import re
import subprocess

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
SOURCES = (".md", ".py", ".rs", ".hpp", ".h", ".cc", ".cpp", ".jl", ".cu", ".cuh", ".sh")


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def tracked():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [f for f in out.split() if f.endswith(SOURCES) and os.path.isfile(os.path.join(ROOT, f))]


def anchor(heading):
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_math_anchors_exist():
    anchors = {anchor(ln) for ln in read("docs/math.md").splitlines() if ln.startswith("#")}
    bad = {}
    for rel in tracked():
        try:
            text = read(rel)
        except UnicodeDecodeError:
            continue
        for a in re.findall(r"math\.md#([\w-]+)", text):
            if a not in anchors:
                bad.setdefault(a, []).append(rel)
        if rel.endswith(".md") and re.search(r"math\.md (?:section |§)?\d", text):
            bad.setdefault("(a section number)", []).append(rel)
    assert not bad, bad


def makefile_targets():
    text = read("Makefile")
    phony = re.search(r"^\.PHONY:(.*?)(?:\n\n|\n[^ \t\\])", text, re.S | re.M).group(1)
    return set(phony.replace("\\", " ").split()) - {"all"}


def test_makefile_header_names_every_target():
    header = "\n".join(ln for ln in read("Makefile").splitlines()[:60] if ln.startswith("#"))
    words = set(re.findall(r"[a-z][a-z0-9-]*", header))
    missing = sorted(t for t in makefile_targets() if t not in words)
    assert not missing, f"targets the Makefile's header comment does not name: {missing}"


def test_readme_make_commands_are_targets():
    text = read("README.md")
    named = set(re.findall(r"`make ([a-z][a-z0-9-]*)", text)) | set(re.findall(r"^make ([a-z][a-z0-9-]*)", text, re.M))
    assert {"demo", "test"} <= named
    unknown = sorted(named - makefile_targets())
    assert not unknown, unknown
