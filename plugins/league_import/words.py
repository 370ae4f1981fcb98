"""Words a person reads once: a count with its noun, and the verb that agrees with it."""

from __future__ import annotations


def plural(count: int | float, noun: str, nouns: str | None = None) -> str:
    """`1 row`, `2 rows`, `1,074 rows` (`nouns` when adding an s is not the plural)."""
    number = f"{int(count):,}" if float(count).is_integer() else f"{count:,.2f}"
    return f"{number} {noun if count == 1 else nouns or noun + 's'}"


def verb(count: int | float, one: str, many: str) -> str:
    """The verb for `count` things: `waits` for one, `wait` for more (or none)."""
    return one if count == 1 else many
