"""The C ABI page of the reference, generated from include/era.h when Sphinx reads it.

docs/api/c.md holds the page's introduction and a line ``<!-- era.h -->``; on Sphinx's
``source-read`` event that line is replaced by MyST directives of Sphinx's C domain
(``c:macro``, ``c:enum``, ``c:type``, ``c:struct``, ``c:function``), one per declaration
of era.h, each with its doc comment as the body. The comments are Markdown already
(backticks, lists), so MyST renders them as written; a ``# Safety`` line becomes a bold
paragraph, and a backticked name of another documented declaration becomes a link.
Nothing is written to disk: the header is the only source.
"""

import re

MARKER = "<!-- era.h -->"


def _comment_lines(lines, i):
    """Returns (the doc comment starting at lines[i] ("/**"), the index after it)."""
    indent = len(lines[i]) - len(lines[i].lstrip())
    body = []
    i += 1
    while lines[i].strip() != "*/":
        text = lines[i][indent:]
        body.append(re.sub(r"^ \* ?|^ \*$", "", text).rstrip())
        i += 1
    return body, i + 1


def _statement(lines, i, end=";"):
    """Joins lines from i up to the one ending in `end`; returns (text, next index)."""
    parts = []
    while True:
        parts.append(lines[i].strip())
        i += 1
        if parts[-1].endswith(end):
            return " ".join(parts), i


def parse(text):
    """The documented declarations of era.h, in order: dicts with kind, name, sig, doc, members."""
    lines = text.splitlines()
    items = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "/**":
            i += 1
            continue
        doc, i = _comment_lines(lines, i)
        line = lines[i].strip()
        if line.startswith("#define "):
            _, name, value = line.split(None, 2)
            items.append(dict(kind="macro", name=name, sig=name, doc=doc + ["", f"Value: `{value}`"]))
            i += 1
        elif line.startswith("enum "):
            name = line.split()[1]
            members = []
            while lines[i].strip() != "};":
                if lines[i].strip() == "/**":
                    mdoc, i = _comment_lines(lines, i)
                    member = lines[i].strip().rstrip(",")
                    members.append(dict(kind="enumerator", name=member.split()[0], sig=member, doc=mdoc))
                i += 1
            items.append(dict(kind="enum", name=name, sig=name, doc=doc, members=members))
        elif line.startswith("typedef struct") and line.endswith("{"):
            name = line.split()[2]
            members = []
            i += 1
            while not lines[i].strip().startswith("}"):
                if lines[i].strip() == "/**":
                    mdoc, i = _comment_lines(lines, i)
                    member = lines[i].strip().rstrip(";")
                    members.append(dict(kind="member", name=member.split()[-1], sig=member, doc=mdoc))
                i += 1
            items.append(dict(kind="struct", name=name, sig=name, doc=doc, members=members))
        elif line.startswith("typedef "):
            sig = line[len("typedef "):].rstrip(";")
            name = sig.split()[-1]
            if sig.startswith("struct "):  # an opaque handle
                sig = name
            items.append(dict(kind="type", name=name, sig=sig, doc=doc))
        else:
            sig, i = _statement(lines, i)
            sig = re.sub(r"\s+", " ", sig.rstrip(";")).replace("( ", "(")
            name = re.search(r"(\w+)\(", sig).group(1)
            items.append(dict(kind="function", name=name, sig=sig, doc=doc))
    return items


def _body(doc, roles):
    """The comment as MyST Markdown: Safety headings as bold paragraphs, names as links."""
    out = []
    for line in doc:
        heading = re.match(r"^# (\w+)$", line)
        if heading:
            line = f"**{heading.group(1)}.**"

        def link(m):
            role = roles.get(m.group(1))
            return f"{{c:{role}}}`{m.group(1)}`" if role else m.group(0)

        out.append(re.sub(r"`(\w+)`", link, line))
    return "\n".join(out).strip("\n")


def _directive(item, roles, fence="````"):
    text = f"{fence}{{c:{item['kind']}}} {item['sig']}\n{_body(item['doc'], roles)}\n"
    for member in item.get("members", []):
        text += "\n" + _directive(member, roles, "```")
    return text + fence + "\n"


SECTIONS = [
    ("Constants", ("macro",)),
    ("Status codes", ("enum",)),
    ("Types", ("type", "struct")),
    ("Functions", ("function",)),
]


def render(header_text):
    items = parse(header_text)
    role_of = {"macro": "macro", "enum": "enum", "type": "type", "struct": "struct", "function": "func"}
    roles = {item["name"]: role_of[item["kind"]] for item in items}
    for item in items:
        for member in item.get("members", []):
            roles[member["name"]] = "enumerator" if member["kind"] == "enumerator" else "member"
    # members' cross-references need their parent's scope
    roles = {k: v for k, v in roles.items() if v not in ("member", "enumerator")}
    out = []
    for title, kinds in SECTIONS:
        out.append(f"## {title}\n")
        for item in items:
            if item["kind"] in kinds:
                out.append(_directive(item, roles))
    return "\n".join(out)


def _source_read(app, docname, source):
    if MARKER in source[0]:
        with open(app.config.era_header, encoding="utf-8") as f:
            source[0] = source[0].replace(MARKER, render(f.read()))


def setup(app):
    app.add_config_value("era_header", "", "env")
    app.connect("source-read", _source_read)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
