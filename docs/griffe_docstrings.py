"""Griffe extension for the API reference: the runtime's docstrings are reStructuredText-flavoured prose, so two
things in them would not render as Markdown. Doctest lines (`>>> ...`) become fenced `pycon` blocks (instead of
nested block quotes), and Sphinx roles (:class:`StylecastError`) become code spans. The source stays as it is."""

from __future__ import annotations

import re

from griffe import Extension

ROLE = re.compile(r":(?:class|meth|func|attr|mod|data|exc|obj|py:\w+):`~?([^`]+)`")
DOCTEST_FLAG = re.compile(r"\s*#\s*doctest:.*$")


def markdown_docstring(text: str) -> str:
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if block:
            out.extend(["", "```pycon", *block, "```", ""])
            block.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(">>>") or (block and stripped.startswith("...")):
            block.append(DOCTEST_FLAG.sub("", stripped))
        else:
            flush()
            out.append(line)
    flush()
    return ROLE.sub(r"`\1`", "\n".join(out))


class MarkdownDocstrings(Extension):
    def on_instance(self, *, obj, **kwargs) -> None:  # noqa: ANN001 - a griffe Object
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
