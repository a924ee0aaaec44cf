"""Search value syntax shared by every parameter type: escaping, and splitting on `,` `|` `$`.

https://hl7.org/fhir/R4/search.html#escaping: a backslash escapes `,` `$` `|` and itself inside a
value; unescaped commas separate OR values, pipes separate system and code, dollars composite parts.
"""

from __future__ import annotations


def split_unescaped(text: str, separator: str) -> list[str]:
    """Split on `separator` where it is not escaped; escapes are kept (call `unescape` on each part)."""
    if "\\" not in text:
        return text.split(separator)
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    """Remove the backslash of `\\,` `\\|` `\\$` `\\\\` (other backslashes stay as they are)."""
    if "\\" not in text:
        return text
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in ",|$\\":
            out.append(text[index + 1])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)
