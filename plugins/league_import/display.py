"""Text from the files and from users' rows, shown as written: never as markup, never as a
terminal's control sequence.

printable() escapes control and invisible format characters (ESC, a zero-width space, a
right-to-left override) the way Python writes them in a string literal, so that a person reading
a terminal or a page sees that they are there. markdown_literal() also escapes every ASCII
punctuation character (CommonMark lets any be escaped), so that Markdown and HTML in a user's
text are shown as the characters the user typed, not rendered or stripped.
"""

from __future__ import annotations

import unicodedata

HIDDEN = ("Cc", "Cf")  # control, and invisible format characters


def is_hidden(char: str) -> bool:
    return unicodedata.category(char) in HIDDEN


def _escaped(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii") if is_hidden(char) else char


def printable(text: str) -> str:
    """`text` with its control and format characters escaped (ESC as \\x1b, U+200B as \\u200b)."""
    if text.isprintable():
        return text
    return "".join(_escaped(c) for c in text)


def markdown_literal(text: str) -> str:
    """`text` as Markdown that renders as its own characters: printable(), then every ASCII
    punctuation character backslash-escaped (so `<script>`, `**bold**` and `[x](javascript:)`
    show as typed)."""
    return "".join(
        "\\" + c if c.isascii() and not c.isalnum() and c.isprintable() and c != " " else c for c in printable(text)
    )
