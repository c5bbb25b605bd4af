"""One section of bench/REPORT.md, written by one benchmark script (bench/journal.py, posix.py,
wal.py, bulk.py, search.py) between its own markers, leaving the rest of the report as it is;
and the sections that a rewrite of the whole report (bench/host.py) keeps."""

import re


def sections(text):
    """The marked sections of a report: every block from a line `<!-- NAME: begin -->` to its
    `<!-- NAME: end -->`, markers included, in order."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.fullmatch(r"<!-- (.+): begin -->", lines[i])
        end = m and f"<!-- {m.group(1)}: end -->"
        if end and end in lines[i:]:
            j = lines.index(end, i)
            out.append("\n".join(lines[i:j + 1]) + "\n")
            i = j + 1
        else:
            i += 1
    return out


def markers(name):
    """The lines `<!-- NAME: begin -->` and `<!-- NAME: end -->` around the section NAME (as
    [`sections`] finds them)."""
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


def write_section(path, text, begin, end):
    """Puts `text` between the lines `begin` and `end` in the file at `path`: in place of the
    section already there, else appended after a blank line (the file is made if missing)."""
    try:
        old = open(path).read()
    except FileNotFoundError:
        old = ""
    block = f"{begin}\n{text}{end}\n"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        new = head + block + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + block
    with open(path, "w") as f:
        f.write(new)
