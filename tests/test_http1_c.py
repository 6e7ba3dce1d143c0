"""The compiled HTTP/1 framing (pcapsense/app/_http1.c) against its Python reference
(http1._frame_py): the same messages, field for field and type for type, on every
direction of every repo capture, on mutated copies of them (bytes flipped, cut,
shifted, framing headers inserted), and on the inputs it must leave to Python."""

import random

import pytest

import pcapsense
from conftest import keylog_of, repo_captures
from pcapsense.app import facts, http1
from pcapsense.app.segments import Piece

FIELDS = ["kind", "offset", "frame", "ts_ns", "head_end", "method", "target", "status", "reason", "version",
          "headers", "content_length", "chunked", "body_end", "complete", "malformed", "raw_head"]

pytestmark = pytest.mark.skipif(http1._http1 is None, reason="the compiled module is not built")


def snap(msgs):
    return [[(f, getattr(m, f), type(getattr(m, f))) for f in FIELDS] for m in msgs]


def compiled(kind, pieces, total, methods=None):
    return http1._http1.frame(kind, pieces, total, methods, http1.Message)


def same(kind, pieces, total, methods=None) -> bool:
    """True when the compiled framing decided; asserts it agrees with the reference (or
    that the reference raised too: a hostile status the rows catch)."""
    c = compiled(kind, pieces, total, methods)
    if c is None:
        return False
    assert snap(c) == snap(http1._frame_py(kind, pieces, total, methods)), (kind, pieces, total, methods)
    return True


@pytest.fixture(scope="module")
def directions():
    """(kind, pieces, total, methods) of every HTTP/1 direction the repo captures hold."""
    seen = []
    real = http1.parse_direction

    def spy(kind, pieces, total, methods=None):
        seen.append((kind, list(pieces), total, None if methods is None else list(methods)))
        return real(kind, pieces, total, methods)
    compiled_module = http1._http1
    facts.http1.parse_direction = spy
    http1._http1 = None           # (facts._one then frames through parse_direction)
    try:
        for path in repo_captures():
            pcapsense.analyze(str(path), jobs=1)
    finally:
        facts.http1.parse_direction = real
        http1._http1 = compiled_module
    return seen


def test_every_direction_of_the_repo_captures(directions):
    assert len(directions) > 300
    decided = sum(same(*d) for d in directions)
    assert decided == len(directions)           # real traffic never needs the fallback


MUTATIONS = [b"\r\nContent-Length: 5", b"\r\nTransfer-Encoding: chunked", b"\r\nconnection : close",
             b"\r\nHOST:\t x \x0b", b"\r\n\r\n", b"0\r\n\r\n", b"HTTP/1.1 204 No\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
             b"\r\ncontent-length: 1_0", b"\r\ncontent-length: -3", b"\r\ncontent-length: 99999999999999999999",
             b"\r\nContent-Length: 7, 7", b"\r\nContent-length:\x0c12 ", b"HTTP/1.0 1234567890 x\r\n"]


def _mutate(rng, pieces):
    ps = list(pieces)
    for _ in range(rng.randint(1, 4)):
        if not ps:
            break
        i = rng.randrange(len(ps))
        p = ps[i]
        d, off, ln, tail = bytearray(p.data), p.offset, p.length, p.tail
        r = rng.random()
        if r < 0.3 and d:
            for _ in range(rng.randint(1, 5)):
                d[rng.randrange(len(d))] = rng.choice(b"\r\n :0123456789-+_,\xb2aZ\t\x0c")
        elif r < 0.45 and d:
            del d[rng.randrange(len(d)):]                      # cut (snaplen, copy cap)
        elif r < 0.6:
            at = rng.randrange(len(d) + 1)
            d[at:at] = rng.choice(MUTATIONS)
        elif r < 0.7:
            off += rng.randint(-50, 50)                       # overlap or gap
        elif r < 0.8:
            ln, tail = max(0, ln + rng.randint(-20, 2000)), not tail
        elif r < 0.9 and len(ps) > 1:
            del ps[i]                                         # a lost segment
            continue
        ps[i] = Piece(off, bytes(d), ln, p.frame, p.ts_ns, tail)
    return ps


def test_mutated_directions(directions):
    rng = random.Random(6)
    decided = 0
    for kind, pieces, total, methods in directions:
        for _ in range(8):
            m = methods
            if kind == "response" and rng.random() < 0.3:
                m = [rng.choice(["GET", "HEAD", "CONNECT", "POST"]) for _ in range(rng.randint(0, 4))]
            decided += same(kind, _mutate(rng, pieces), total + rng.choice([0, 0, -10, 10]), m)
    assert decided > 0.9 * 8 * len(directions)


def piece(data: bytes, offset=0, length=None, frame=1, ts=10, tail=False):
    return Piece(offset, data, len(data) if length is None else length, frame, ts, tail)


@pytest.mark.parametrize("kind,data", [
    ("request", b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello"),      # int() takes a sign
    ("request", b"POST / HTTP/1.1\r\nContent-Length: 1_0\r\n\r\n"),          # and underscores
    ("request", b"POST / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n"),   # > 18 digits
    ("response", b"HTTP/1.1 2\xb200 OK\r\n\r\n"),       # isdigit() but not int(): Python raises
    ("response", b"HTTP/1.1 2000000000 OK\r\n\r\n"),    # a status past 9 digits
])
def test_what_only_python_decides_goes_to_python(kind, data, monkeypatch):
    """Inputs where Python's int() / str.isdigit() say something C arithmetic would not:
    the compiled framing declines, and parse_direction gives the pure-Python answer."""
    ps = [piece(data)]
    assert compiled(kind, ps, len(data)) is None

    def run():
        try:
            return snap(http1.parse_direction(kind, ps, len(data)))
        except ValueError as exc:        # (facts.rows_for turns it into the row's app_error)
            return repr(exc)
    got = run()
    monkeypatch.setattr(http1, "_http1", None)
    assert got == run()


def test_framing_cases_by_hand():
    """Keep-alive with Content-Length, a HEAD response without body, chunked ending in
    the same segment, a head cut by a gap, a bad Content-Length, a CONNECT tunnel."""
    a, b = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD /b HTTP/1.1\r\nhost :  y \r\nConnection: close\r\n\r\n"
    reqs = [piece(a), piece(b, offset=len(a), frame=3)]
    got = compiled("request", reqs, len(a + b))
    assert [(m.method, m.target, m.version, m.offset, m.head_end, m.complete) for m in got] == \
        [("GET", "/a", "1.1", 0, len(a), True), ("HEAD", "/b", "1.1", len(a), len(a + b), True)]
    assert got[1].headers == [("host", "y"), ("connection", "close")] and got[1].frame == 3
    assert same("request", reqs, len(a + b))

    resp = [piece(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n"
                  b"Content-Length: 10\r\n\r\n0123456789")]
    got = compiled("response", resp, len(resp[0].data), ["GET", "HEAD"])
    # the second answers a HEAD: its Content-Length declares, no body follows
    assert [(m.status, m.content_length, m.head_end, m.body_end, m.complete) for m in got] == \
        [(200, 3, 38, 41, True), (200, 10, 80, 80, True)]
    assert same("response", resp, len(resp[0].data), ["GET", "HEAD"])

    chunked = [piece(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")]
    (m,) = compiled("response", chunked, len(chunked[0].data))
    assert m.chunked and m.complete and m.body_end == len(chunked[0].data)
    assert same("response", chunked, len(chunked[0].data))

    gap = [piece(b"GET / HTTP/1.1\r\nHost: a"), piece(b"more\r\n\r\n", offset=40)]
    (m,) = compiled("request", gap, 60)
    assert m.malformed == "head cut by a gap" and m.method == "GET" and m.head_end is None
    assert same("request", gap, 60)

    bad = [piece(b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n")]
    (m,) = compiled("request", bad, 40)
    assert m.malformed == "bad Content-Length" and m.content_length is None and m.complete
    assert same("request", bad, 40)

    tunnel = [piece(b"CONNECT h:443 HTTP/1.1\r\n\r\n"), piece(b"\x16\x03\x01 tls bytes", offset=26)]
    (m,) = compiled("request", tunnel, 40)
    assert m.method == "CONNECT" and m.body_end == 26
    assert same("request", tunnel, 40)


def _typed(v):
    if isinstance(v, dict):
        return {k: _typed(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [type(v).__name__] + [_typed(x) for x in v]
    return (type(v).__name__, v)


@pytest.fixture(scope="module")
def connections():
    """The arguments of every facts._one call the repo captures make."""
    seen = []
    real = facts._one

    def spy(st, pieces, client_dir, totals, session=None, keyed=False):
        cd = int(client_dir[st])
        seen.append((st, {k: list(v) for k, v in pieces.items() if k[0] == st}, {st: cd},
                     {(st, d): totals[(st, d)] for d in (0, 1)}, session, keyed))
        return real(st, pieces, client_dir, totals, session, keyed)
    facts._one = spy
    try:
        for path in repo_captures():
            pcapsense.analyze(str(path), jobs=1, keylog=keylog_of(path))
    finally:
        facts._one = real
    return seen


def _flat(row: dict) -> dict:
    """A fact row with the compiled path's HTTP tuple spread into keys, and the keys
    whose value is None left out (facts_frame reads both as missing)."""
    row = dict(row)
    row.update(zip(facts._HTTP_FACTS, row.pop("_http", ())))
    return {k: v for k, v in row.items() if v is not None}


def _both_ways(monkeypatch, st, pieces, cdir, totals, session=None, keyed=False):
    got = facts._one(st, pieces, cdir, totals, session, keyed)
    with monkeypatch.context() as m:
        m.setattr(http1, "_http1", None)
        want = facts._one(st, pieces, cdir, totals, session, keyed)
    assert _typed(_flat(got)) == _typed(_flat(want))
    return got


def test_connections_in_c_as_in_python(connections, monkeypatch):
    """facts._one with the compiled connection() and with the Python path: the same fact
    row and exchange rows, value for value and type for type, for every connection of
    the repo captures (HTTP/1, proxies, tunnels, h2c upgrades, TLS, junk)."""
    kinds = {_both_ways(monkeypatch, *c)["app_protocol"] for c in connections}
    assert {"http1", "http-proxy", "http-proxy-tunnel", "tls"} <= kinds


def test_mutated_connections_in_c_as_in_python(connections, monkeypatch):
    rng = random.Random(11)
    http = [c for c in connections if any(p.data[:4] in (b"GET ", b"POST", b"HTTP", b"CONN", b"HEAD")
                                          for v in c[1].values() for p in v[:1])]
    assert len(http) > 100
    real, decided = http1._http1.connection, []

    def counting(*args):
        out = real(*args)
        decided.append(out is not None)
        return out
    monkeypatch.setattr(http1._http1, "connection", counting)
    for st, pieces, cdir, totals, _session, _keyed in http:
        for _ in range(4):
            mutated = {k: _mutate(rng, v) for k, v in pieces.items()}
            _both_ways(monkeypatch, st, mutated, cdir, totals)
    assert sum(decided) > 0.8 * len(decided) > 300     # mostly decided in C, not handed back


def test_header_callback_decodes_and_lowers_as_python():
    """httptools' on_header callback, compiled: for every byte value in a name, the pair
    is what name.decode("latin-1").lower(), value.decode("latin-1") gives."""
    collector = http1._http1.Collector()
    names = [bytes([i]) + b"-Ab\xc0" for i in range(256)] + [b"X" * 300, b""]
    for n in names:
        collector.on_header(n, n + b" \xff")
    out = collector.headers
    assert out == [(n.decode("latin-1").lower(), (n + b" \xff").decode("latin-1")) for n in names]
    assert all(type(a) is str and type(b) is str for a, b in out)


def test_a_message_class_without_slots_goes_to_python():
    """The compiled framing writes Message fields at their slots; a class laid out
    otherwise makes it decline (None), never write where it should not."""
    import dataclasses

    @dataclasses.dataclass
    class Loose:
        kind: str
        offset: int
    assert http1._http1.frame("request", [piece(b"GET / HTTP/1.1\r\n\r\n")], 18, None, Loose) is None
    got = http1._http1.frame("request", [piece(b"GET / HTTP/1.1\r\n\r\n")], 18, None, http1.Message)
    assert [(m.method, m.head_end, m._hdict) for m in got] == [("GET", 18, None)]


def test_fact_tables_from_either_path_are_the_same(connections, monkeypatch):
    """facts_frame over rows of the compiled path (HTTP facts as one tuple), of the
    Python path (keys), and of both mixed: one table."""
    import pandas as pd
    compiled_rows = [facts._one(*c) for c in connections]
    with monkeypatch.context() as m:
        m.setattr(http1, "_http1", None)
        python_rows = [facts._one(*c) for c in connections]
    for r in compiled_rows + python_rows:
        r.pop("_exchanges", None)
    assert any("_http" in r for r in compiled_rows)
    want = facts.facts_frame([dict(r) for r in python_rows])
    mixed = [dict(a if i % 3 else b) for i, (a, b) in enumerate(zip(compiled_rows, python_rows))]
    for rows in ([dict(r) for r in compiled_rows], mixed):
        pd.testing.assert_frame_equal(facts.facts_frame(rows), want, check_exact=True)


def test_parse_head_in_c_as_in_python(directions):
    """The compiled parse_head (the same httptools calls, collected in C) leaves every
    field of a message as http1._parse_head does: on every head of the repo captures,
    on mutated ones (rejected heads go to the Python one), and with odd Content-Lengths."""
    rng = random.Random(2)
    heads = []
    for kind, pieces, _total, _methods in directions:
        for m in http1._frame_py(kind, pieces, 10**9):
            if m.raw_head:
                heads.append((kind, m.raw_head))
    assert len(heads) > 300
    extra = [("request", b"GET / HTTP/1.1\r\nContent-Length: 1, 2\r\nContent-Length: x\r\n\r\n"),
             ("request", b"POST /a HTTP/1.0\r\nContent-Length: \xb2\r\n\r\n"),
             ("response", b"HTTP/1.1 200 OK\r\nContent-Length:  7 \r\n\r\n"),
             ("response", b"HTTP/1.1 101 Switching\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"),
             ("response", b"HTTP/1.1 2x0 Bad\r\n\r\n"), ("request", b"BREW / HTTP/1.1\r\n\r\n")]
    mutated = []
    for kind, h in heads[:400]:
        b = bytearray(h)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.choice(b" :\r\n\x00\xff0aZ,")
        mutated.append((kind, bytes(b)))
    for kind, h in heads + extra + mutated:
        a = http1.Message(kind, 0, 1, 2, headers=[("x", "y")], content_length=5, chunked=True)
        b = http1.Message(kind, 0, 1, 2, headers=[("x", "y")], content_length=5, chunked=True)
        http1._http1.parse_head(kind, h, a)
        http1._parse_head(kind, h, b)
        assert snap([a]) == snap([b]), (kind, h)
