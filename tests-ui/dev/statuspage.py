#!/usr/bin/env python3
"""Moves the status page between Sources/DataMesherHTTP/StatusPage.swift and a plain HTML file.

    statuspage.py extract [OUT.html]   writes the HTML held in StatusPage.swift (stdout by default)
    statuspage.py embed IN.html        replaces the HTML in StatusPage.swift with IN.html

StatusPage.swift stays the source of truth; this is only a convenience for editing and for
tests-ui/dev/server.py. The literal is a Swift raw multi-line string (#\"\"\"...\"\"\"#) whose lines
are indented by the closing delimiter's indentation, which the compiler strips.
"""
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SWIFT = os.path.join(ROOT, "Sources", "DataMesherHTTP", "StatusPage.swift")
PATTERN = re.compile(r'(static let html: String = #"""\n)(.*?)\n([ \t]*)"""#', re.S)


def extract(swift_text):
    m = PATTERN.search(swift_text)
    if not m:
        raise SystemExit("StatusPage.swift: no html raw string literal found")
    indent = m.group(3)
    lines = []
    for line in m.group(2).split("\n"):
        if line.strip() == "":
            lines.append("")
        elif line.startswith(indent):
            lines.append(line[len(indent):])
        else:
            raise SystemExit("StatusPage.swift: a line is indented less than the closing delimiter")
    return "\n".join(lines) + "\n"


def embed(swift_text, html):
    if '"""#' in html or "\\#" in html:
        raise SystemExit('the HTML must not contain """# or \\# (they end or escape a Swift #-raw string)')
    m = PATTERN.search(swift_text)
    if not m:
        raise SystemExit("StatusPage.swift: no html raw string literal found")
    indent = m.group(3)
    body = "\n".join(indent + line if line.strip() else "" for line in html.rstrip("\n").split("\n"))
    return swift_text[: m.start(2)] + body + swift_text[m.end(2):]


def main(argv):
    with open(SWIFT, encoding="utf-8") as f:
        swift_text = f.read()
    if len(argv) >= 2 and argv[1] == "extract":
        html = extract(swift_text)
        if len(argv) > 2:
            with open(argv[2], "w", encoding="utf-8") as f:
                f.write(html)
        else:
            sys.stdout.write(html)
    elif len(argv) == 3 and argv[1] == "embed":
        with open(argv[2], encoding="utf-8") as f:
            html = f.read()
        with open(SWIFT, "w", encoding="utf-8") as f:
            f.write(embed(swift_text, html))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
