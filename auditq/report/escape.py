"""Escaping for every writer: text that came from users, files or engines (waiver reasons, error messages,
paths, suite names) must not break or inject into the file it is written to.

- `visible`: characters that XML 1.0 forbids (C0 controls other than tab/newline/CR, surrogates,
  U+FFFE/U+FFFF) and the terminal-control C1 range become visible escapes such as ``\\x07``;
  junit.xml and SARIF go through it, so junit.xml is always well-formed;
- `md`: Markdown table cells: HTML special characters as entities, ``|`` escaped, Markdown emphasis /
  link / code characters escaped, newlines as spaces;
- `md_code`: an inline code span that cannot be closed early (an HTML <code> element);
- `term`: rich markup escaped (``[bold]`` in a reason is printed, not interpreted) and controls visible.
"""

from __future__ import annotations

import html
import re

_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def visible(value: object) -> str:
    text = "" if value is None else str(value)
    return _FORBIDDEN.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                          text)


def md(value: object) -> str:
    text = visible(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    text = text.replace("&", "&amp;")
    return _MD_SPECIAL.sub(lambda m: {"<": "&lt;", ">": "&gt;"}.get(m.group(), "\\" + m.group()), text)


def md_code(value: object) -> str:
    text = visible(value).replace("\n", " ")
    return f"<code>{html.escape(text, quote=False).replace('|', '&#124;')}</code>"


def term(value: object) -> str:
    from rich.markup import escape

    return escape(visible(value))
