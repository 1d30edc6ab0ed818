"""The lenient List-Unsubscribe tokenizer: every fault reported, the URIs still recovered."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unsubkit.audit.listunsub import FaultKind, tokenize
from unsubkit.headers import fold, parse_list_unsubscribe


def kinds(value: bytes) -> list[FaultKind]:
    return [f.kind for f in tokenize(value).faults]


def test_clean_value() -> None:
    p = tokenize(b" <https://a.example/u/1>, <mailto:u@a.example?subject=unsubscribe>")
    assert p.uris == ["https://a.example/u/1", "mailto:u@a.example?subject=unsubscribe"]
    assert p.faults == () and not p.encoded_words and not p.non_ascii
    assert [i.scheme for i in p.items] == ["https", "mailto"]


def test_fold_after_comma_is_fine_and_fold_inside_is_not() -> None:
    assert kinds(b" <https://a.example/u/1>,\r\n <mailto:u@a.example>") == []
    p = tokenize(b" <https://a.example/u/\r\n 1>")
    assert [f.kind for f in p.faults] == [FaultKind.FOLD_INSIDE]
    assert p.uris == ["https://a.example/u/1"]


def test_space_inside() -> None:
    assert kinds(b"<https://a.example/u/ 1>") == [FaultKind.SPACE_INSIDE]


def test_bare_uri_with_a_space_like_a_real_esp() -> None:
    p = tokenize(b" http://news.example/unsub.jsp?id= 5812L1QV")
    assert kinds(b" http://news.example/unsub.jsp?id= 5812L1QV") == [FaultKind.UNBRACKETED, FaultKind.SPACE_INSIDE]
    assert p.uris == ["http://news.example/unsub.jsp?id=5812L1QV"]
    assert not p.items[0].bracketed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"<https://a.example/1> <mailto:u@a.example>", [FaultKind.NO_COMMA]),
        (b"<https://a.example/<1>", [FaultKind.NESTED]),
        (b"https://a.example/1>", [FaultKind.UNBRACKETED, FaultKind.UNBALANCED]),
        (b"<https://a.example/1", [FaultKind.UNTERMINATED]),
        (b"<>", [FaultKind.EMPTY_ITEM]),
        (b"   ", [FaultKind.EMPTY_FIELD]),
        (b"<https://a.example/1> (comment", [FaultKind.UNTERMINATED]),
    ],
)
def test_faults(value: bytes, expected: list[FaultKind]) -> None:
    assert kinds(value) == expected


def test_comment_after_item_is_kept() -> None:
    p = tokenize(b"<https://a.example/1> (Use this), <mailto:u@a.example>")
    assert p.faults == ()
    assert p.items[0].comment == "Use this"


def test_encoded_words_are_decoded_and_flagged() -> None:
    p = tokenize(b" =?us-ascii?Q?=3Chttps=3A=2F=2Fa=2Eexample=2Fu=2F1=3E?=")
    assert p.encoded_words
    assert p.uris == ["https://a.example/u/1"]


def test_raw_8bit_flagged() -> None:
    assert tokenize("<https://a.example/ü>".encode()).non_ascii


uri = st.from_regex(r"https://[a-z]{1,10}\.example/u/[A-Za-z0-9_-]{1,200}", fullmatch=True)


@given(st.lists(uri, min_size=1, max_size=4))
@settings(max_examples=200)
def test_agrees_with_the_strict_parser_on_our_own_folded_headers(uris: list[str]) -> None:
    value = ", ".join(f"<{u}>" for u in uris)
    folded = fold("List-Unsubscribe", value)
    p = tokenize(folded.encode())
    assert p.faults == ()
    assert p.uris == parse_list_unsubscribe(folded) == uris
