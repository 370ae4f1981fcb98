"""Counts as a person reads them."""

from __future__ import annotations

from league_import.words import plural, verb


def test_a_count_agrees_with_its_noun_and_verb():
    assert [plural(n, "row") for n in (0, 1, 2, 1074)] == ["0 rows", "1 row", "2 rows", "1,074 rows"]
    assert plural(1, "alias", "aliases") == "1 alias" and plural(3, "match", "matches") == "3 matches"
    assert plural(2.5, "hour") == "2.50 hours" and plural(1.0, "row") == "1 row"
    assert [f"{plural(n, 'row')} {verb(n, 'waits', 'wait')}" for n in (1, 2)] == ["1 row waits", "2 rows wait"]
