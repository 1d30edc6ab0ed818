"""Send-time filtering: the fast normalizer's equivalence, list reading, the streaming filter,
the batch API, and ``unsubkit filter`` as a subprocess (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import cli_env, run_cli
from unsubkit.address import normalize
from unsubkit.consent.model import Purpose, PurposeKind
from unsubkit.errors import AddressError
from unsubkit.lists import BlockedIndex, ListReader, filter_list, normalize_fast
from unsubkit.lists.normalize import FAST_MAX_LEN, all_fast, fast_key
from unsubkit.lists.reader import ListError
from unsubkit.service import Unsubkit
from unsubkit.store import bulk

# -- the fast path is email-validator's answer ------------------------------------------------

ATEXT = "abcXYZ0189!#$%&'*+/=?^_`{|}~-"
label = st.one_of(
    st.text("abcxyzABC019-", min_size=1, max_size=8),
    # R-LDH and Punycode labels: valid, invalid, and hyphens elsewhere.
    st.sampled_from(["ab--cd", "XN--bcher-kva", "xn--zz", "a--b", "abc--", "b\u00fccher", "a" * 64]),
)
tld = st.one_of(
    st.sampled_from(["com", "de", "CO", "io", "test", "TEST", "arpa", "local", "localhost", "onion",
                     "invalid", "c1", "1com", "x", "museum", "xn--p1ai", "com-"]),
    st.text("abcXYZ09-", min_size=1, max_size=6),
)
local = st.one_of(
    st.text(ATEXT + ".", min_size=1, max_size=12),
    st.sampled_from(['"quoted"', "a b", "jos\u00e9", "stra\u00dfe", "\u0130nfo", "a..b", ".a", "a."]),
)
address = st.builds(
    lambda lo, labels, t, at, pad: f"{pad}{lo}{at}{'.'.join([*labels, t])}{pad}",
    local, st.lists(label, min_size=0, max_size=3), tld,
    st.sampled_from(["@", "@", "@", "@@", "\uff20", ""]), st.sampled_from(["", "", " ", "\t"]),
)


def outcome(fn: Callable[[str], str], s: str) -> str:
    try:
        return fn(s)
    except AddressError:
        return "<invalid>"


@settings(max_examples=3000, deadline=None)
@given(st.one_of(address, st.emails(), st.text(max_size=30)))
def test_fast_path_equals_email_validator(s: str) -> None:
    assert outcome(normalize_fast, s) == outcome(normalize, s)
    key = fast_key(s.strip())
    if key is not None:
        assert key == normalize(s)


@settings(max_examples=500, deadline=None)
@given(st.emails())
def test_fast_path_takes_plain_addresses(s: str) -> None:
    # Realistic addresses (hypothesis' RFC-valid generator) mostly stay on the fast path; when
    # they do, the answer is the validator's.
    if len(s) <= FAST_MAX_LEN and s.isascii() and "--" not in s.split("@")[1]:
        key = fast_key(s)
        if key is not None:
            assert key == normalize(s)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.one_of(address, st.emails()), max_size=6))
def test_batch_check_equals_per_value_check(values: list[str]) -> None:
    values = [v for v in values if "\n" not in v]
    lowered = "\n".join(values).lower()
    assert all_fast(values, lowered) == all_fast(values) == all(
        len(v) <= FAST_MAX_LEN and fast_key(v) == v.lower() and v == v.strip() for v in values)


def test_fast_path_coverage_on_typical_lists() -> None:
    typical = ["jane.doe@example.com", "JOHN+news@Mail.Example.org", "o'brien@x-y.co.uk",
               "a_b-c@sub.domain-name.travel", "user123@gmail.com"]
    assert all(fast_key(a) is not None for a in typical)
    assert all_fast(typical) and not all_fast([*typical, " pad@example.com"])
    assert all(fast_key(a) is None for a in ["a@b.test", "a@xn--bcher-kva.ch", "jos\u00e9@x.com",
                                               "a@ab--c.com", "x" * 60 + "@example.com"])


# -- reading lists ----------------------------------------------------------------------------


def read(text: str, **kw: object) -> tuple[ListReader, list[tuple[int, str, str]]]:
    reader = ListReader(io.StringIO(text, newline=""), chunk_chars=16, rows_per_chunk=3, **kw)  # type: ignore[arg-type]
    rows = [(c.line_no(i), c.raws[i], c.values[i]) for c in reader.chunks() for i in range(len(c.raws))]
    return reader, rows


def test_reader_lines_crlf_bom_and_no_final_newline() -> None:
    reader, rows = read("\ufeffa@example.com\r\nb@example.com\r\n\r\nc@example.com")
    assert reader.kind == "lines" and reader.header is None
    assert rows == [(1, "\ufeffa@example.com\r", "a@example.com"), (2, "b@example.com\r", "b@example.com"),
                    (3, "\r", ""), (4, "c@example.com", "c@example.com")]


@pytest.mark.parametrize("header, column", [
    ("email,first_name,last_name", "email"),              # SendGrid suppression export
    ("Email Address,First Name,Last Name,MEMBER_RATING", "Email Address"),  # Mailchimp
    ("EmailAddress,Reason,LastUpdateTime", "EmailAddress"),  # SES suppression list
    ("name;E-Mail;city", "E-Mail"),
])
def test_reader_finds_the_email_column(header: str, column: str) -> None:
    delim = ";" if ";" in header else ","
    fields = header.split(delim)
    idx = fields.index(column)
    row = [f"v{i}" for i in range(len(fields))]
    row[idx] = "jane@example.com"
    reader, rows = read(f"{header}\n{delim.join(row)}\n")
    assert reader.kind == "csv" and reader.header == header and reader.column_index == idx
    assert rows == [(2, delim.join(row), "jane@example.com")]


def test_reader_csv_quoting_named_column_and_errors() -> None:
    text = 'id,contact,note\n1,jane@example.com,"multi\nline"\n2,"john@example.com",x\n\n3,,short\n'
    _, rows = read(text, column="Contact")
    assert [(n, v) for n, _, v in rows] == [(2, "jane@example.com"), (4, "john@example.com"), (6, "")]
    assert rows[0][1] == '1,jane@example.com,"multi\nline"'
    with pytest.raises(ListError, match="no column 'mail'"):
        read("id,contact\n1,a@b.com\n", column="mail")
    with pytest.raises(ListError, match="without an email column"):
        read("id,name\n1,x\n")
    single, rows = read("Email\njane@example.com\n")
    assert single.kind == "csv" and rows == [(2, "jane@example.com", "jane@example.com")]


# -- the streaming filter ---------------------------------------------------------------------

MARKETING = Purpose(1, "marketing", PurposeKind.COMMERCIAL)
line = st.one_of(
    st.sampled_from(["jane@example.com", "JANE@example.com", "john@example.com", "bad", "",
                     "  pad@example.com ", "ann@b\u00fccher.example", "x@localhost", "a@b.test"]),
    st.emails(), st.text("ab@. \t", max_size=8),
)


def reference(lines: list[str], blocked: dict[str, str]) -> tuple[list[str], dict[str, int]]:
    kept, counts = [], {"kept": 0, "blocked": 0, "invalid": 0}
    for raw in lines:
        value = raw.rstrip("\r")
        if not value.strip():
            continue
        try:
            key = normalize(value)
        except AddressError:
            counts["invalid"] += 1
            continue
        if key in blocked:
            counts["blocked"] += 1
        else:
            counts["kept"] += 1
            kept.append(raw)
    return kept, counts


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(line, max_size=40), crlf=st.booleans(), chunk=st.integers(8, 200))
def test_filter_equals_line_by_line_reference(lines: list[str], crlf: bool, chunk: int) -> None:
    lines = [ln for ln in lines if "\n" not in ln and "\r" not in ln]
    if lines and "@" not in lines[0]:
        lines.insert(0, "first@example.com")  # a list without header starts with an address
    blocked = {"jane@example.com": "opted out of purpose", "ann@xn--bcher-kva.example": "bulk email not allowed"}
    raws = [ln + ("\r" if crlf else "") for ln in lines]
    text = "".join(r + "\n" for r in raws)
    out = io.StringIO()
    reader = ListReader(io.StringIO(text, newline=""), chunk_chars=chunk)
    stats = filter_list(reader, BlockedIndex(MARKETING, None, blocked), out)
    kept, counts = reference(raws, blocked)
    assert out.getvalue() == "".join(k + "\n" for k in kept)
    assert (stats.kept, stats.blocked, stats.invalid) == (counts["kept"], counts["blocked"], counts["invalid"])


def test_filter_writes_blocked_rows_with_reasons_and_keeps_csv_rows_unchanged() -> None:
    text = 'Email Address,Name\r\n"jane@example.com","Jane, J."\r\nBAD,Bad\r\njohn@example.com,John\r\n,Empty\r\n'
    out, blocked_out = io.StringIO(), io.StringIO()
    index = BlockedIndex(MARKETING, None, {"john@example.com": "opted out of topic"})
    stats = filter_list(ListReader(io.StringIO(text, newline="")), index, out, blocked_out=blocked_out)
    assert out.getvalue() == 'Email Address,Name\r\n"jane@example.com","Jane, J."\r\n'
    assert blocked_out.getvalue().splitlines() == [
        "line,email,reason",
        "3,BAD,invalid email address: An email address must have an @-sign.",
        "4,john@example.com,opted out of topic",
        "5,,empty email address",
    ]
    assert stats.summary() == "kept 1, blocked 1 (opted out of topic: 1), invalid 2"
    transactional = BlockedIndex(Purpose(2, "receipts", PurposeKind.TRANSACTIONAL), None, {"x@example.com": "r"})
    out = io.StringIO()
    filter_list(ListReader(io.StringIO("x@example.com\n")), transactional, out)
    assert out.getvalue() == "x@example.com\n"


class LazyList(io.TextIOBase):
    """A huge recipient list generated on the fly (nothing held in memory)."""

    def __init__(self, n: int) -> None:
        self.n, self.i, self.buf = n, 0, ""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        while (size is None or size < 0 or len(self.buf) < size) and self.i < self.n:
            self.buf += "".join(f"user{j}@example{j % 97}.com\n" for j in range(self.i, min(self.i + 5000, self.n)))
            self.i = min(self.i + 5000, self.n)
        if size is None or size < 0:
            size = len(self.buf)
        out, self.buf = self.buf[:size], self.buf[size:]
        return out


class Sink(io.TextIOBase):
    def __init__(self) -> None:
        self.chars = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.chars += len(s)
        return len(s)


def peak_memory(n: int) -> int:
    blocked = {f"user{j}@example{j % 97}.com": "opted out of purpose" for j in range(0, 5000, 3)}
    index = BlockedIndex(MARKETING, None, blocked)
    tracemalloc.start()
    try:
        stats = filter_list(ListReader(LazyList(n), chunk_chars=1 << 16), index, Sink())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.kept + stats.blocked == n
    return peak


def test_memory_does_not_grow_with_the_list() -> None:
    # Both runs span many chunks; ten times the rows must not cost more memory.
    small, large = peak_memory(40_000), peak_memory(400_000)
    assert large < small * 1.3, (small, large)


# -- against the database ---------------------------------------------------------------------


def test_blocked_index_pages_and_agrees_with_can_send(kit: Unsubkit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "PAGE", 3)
    m = kit.store.purpose("marketing")
    news = kit.store.add_topic(m.id, "news")
    people = [f"p{i}@example.com" for i in range(12)]
    for p in people[:5]:
        kit.unsubscribe(p, "marketing")
    for p in people[5:8]:
        kit.unsubscribe(p, "marketing", "news")
    c = kit.add_contact(people[8:11])
    kit.set_bulk_email(c.id, False)
    kit.unsubscribe(people[0], None)  # bulk on an address without contact
    kit.resubscribe(people[1], "marketing")
    index = kit.blocked_index("marketing", "news")
    assert len(index) == 4 + 3 + 3
    assert index.decide(people[0]).reason == "bulk email not allowed"
    for p in [*people, "new@example.com"]:
        for purpose, topic in (("marketing", None), ("marketing", "news")):
            assert kit.blocked_index(purpose, topic).decide(p) == kit.can_send(p, purpose, topic)
    checks = list(kit.can_send_many(["P5@Example.com", "bad", "new@example.com"], "marketing", "news"))
    assert [(c.normalized, c.decision.allowed) for c in checks] == [
        ("p5@example.com", False), (None, False), ("new@example.com", True)]
    assert checks[1].decision.reason.startswith("invalid email address")
    assert news.id and not checks[0] and checks[2]


def test_cli_filter(tmp_path: Path, db_url: str) -> None:
    env = cli_env(tmp_path, db_url)
    run_cli("init", env=env)
    run_cli("topics", "add", "news", "--purpose", "marketing", env=env)
    run_cli("consent", "opt-out", "jane@example.com", "--purpose", "marketing", env=env)
    run_cli("consent", "opt-out", "john@example.com", "--purpose", "marketing", "--topic", "news", env=env)
    src = tmp_path / "list.csv"
    src.write_text("email,name\nJane@Example.com,Jane\nbad,B\njohn@example.com,John\nann@example.com,Ann\n")
    res = run_cli("filter", "--purpose", "marketing", "--topic", "news", str(src), "-o",
                  str(tmp_path / "out.csv"), "--blocked", str(tmp_path / "blocked.csv"), env=env)
    assert (tmp_path / "out.csv").read_text() == "email,name\nann@example.com,Ann\n"
    assert (tmp_path / "blocked.csv").read_text().splitlines()[1:] == [
        "2,Jane@Example.com,opted out of purpose",
        "3,bad,invalid email address: An email address must have an @-sign.",
        "4,john@example.com,opted out of topic",
    ]
    assert res.stdout == ""
    assert res.stderr.strip() == ("kept 1, blocked 2 (opted out of purpose: 1, opted out of topic: 1), "
                                  "invalid 1")
    # stdin -> stdout, one address a line, --json counts; a topic opt-out leaves the purpose open.
    res = run_cli("filter", "--purpose", "marketing", "--json", env=env,
                  input=b"john@example.com\r\njane@example.com\r\n")
    assert res.stdout == b"john@example.com\r\n"  # type: ignore[comparison-overlap]
    assert json.loads(res.stderr) == {"kept": 1, "blocked": 1, "invalid": 0,
                                      "reasons": {"opted out of purpose": 1}}


FILTER_ERRORS = [
    (["--purpose", "nope"], "unknown purpose 'nope'"),
    (["--purpose", "marketing", "--topic", "nope"], "unknown topic 'nope'"),
    (["--purpose", "marketing", "--brand", "nope"], "unknown brand 'nope'"),
    (["--purpose", "marketing", "missing.txt"], "cannot read missing.txt"),
    (["--purpose", "marketing", "--column", "mail", "list.csv"], "no column 'mail'"),
    (["--purpose", "marketing", "headerless.csv"], "without an email column"),
]


def test_cli_filter_errors(tmp_path: Path, db_url: str) -> None:
    env = cli_env(tmp_path, db_url)
    run_cli("init", env=env)
    (tmp_path / "list.csv").write_text("email\njane@example.com\n")
    (tmp_path / "headerless.csv").write_text("id,name\n1,Jane\n")
    target = tmp_path / "out.txt"
    for args, message in FILTER_ERRORS:
        res = subprocess.run([sys.executable, "-m", "unsubkit", "filter", *args, "-o", str(target)],
                             env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert res.returncode == 1, args
        assert res.stderr.count("\n") == 1 and message in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
        # Nothing half-written is left behind under the target name or beside it.
        assert not target.exists() and not list(tmp_path.glob(".out.txt.*"))


def test_cli_filter_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    env = cli_env(tmp_path, f"sqlite:///{tmp_path / 'u.db'}")
    run_cli("init", env=env)
    src = tmp_path / "list.txt"
    src.write_text("".join(f"user{i}@example.com\n" for i in range(20000)))
    plain = run_cli("filter", "--purpose", "marketing", str(src), "-o", str(tmp_path / "o1"), env=env)
    assert plain.stderr == "kept 20000, blocked 0, invalid 0\n"
    # Standard error on a pseudo-terminal: rich draws the bar there.
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "unsubkit", "filter", "--purpose", "marketing", str(src), "-o",
             str(tmp_path / "o2")],
            env={**env, "TERM": "xterm", "COLUMNS": "100"}, stdout=subprocess.DEVNULL,
            stderr=follower, timeout=120,
        )
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            seen += data
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    assert b"filtering" in seen and b"kept 20000" in seen
    assert (tmp_path / "o1").read_bytes() == (tmp_path / "o2").read_bytes() == src.read_bytes()
