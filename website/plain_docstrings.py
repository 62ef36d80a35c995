"""A Sphinx extension: the package's indented formulas render as written.

``nvp_edu``'s docstrings are written for ``help()``: a formula or a small table is an
indented block under a sentence, with no reStructuredText ``::``. reST reads such a block
as a block quote: it joins the lines (``y_1 = x_1 y_2 = ...``) and parses ``|det df/dx|``
as a substitution. This turns every indented block under a plain paragraph into a literal
block (shown as written, in a monospace box), before autodoc renders it. Blocks under a
directive, a field, a list item or a ``::`` are left alone.
"""
from __future__ import annotations

import re

_NOT_PLAIN = re.compile(r"^(\.\. |:|>>>|[-*+] |\d+[.)] |#\.)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def literal_blocks(lines: list[str]) -> list[str]:
    """``lines`` with ``::`` put before each indented block that follows a plain paragraph."""
    out: list[str] = []
    para_first: str | None = None   # first and last line of the paragraph before
    para_last = ""
    literal_base: int | None = None  # inside a literal block: the indent it must exceed
    blank_before = False
    for line in lines:
        if not line.strip():
            out.append(line)
            blank_before = True
            continue
        if literal_base is not None and _indent(line) > literal_base:
            out.append(line)  # still inside the (now literal) block
            blank_before = False
            continue
        literal_base = None
        if blank_before and para_first is not None and _indent(line) > _indent(para_first):
            if not _NOT_PLAIN.match(para_first.lstrip()) and not para_last.rstrip().endswith("::"):
                out[-1:-1] = [" " * _indent(para_first) + "::", ""]
                literal_base = _indent(para_first)
                out.append(line)
                blank_before = False
                continue
        if blank_before or para_first is None:
            para_first = line
        para_last = line
        out.append(line)
        blank_before = False
    return out


def _process(app, what, name, obj, options, lines: list[str]) -> None:
    lines[:] = literal_blocks(lines)


def setup(app) -> dict:
    # After napoleon (priority 500), which turns "Args:" sections into reST fields first.
    app.connect("autodoc-process-docstring", _process, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
