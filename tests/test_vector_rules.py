"""The rules over columns (pcapsense/classify/vector.py) against the per-row rules of
rules.py (the reference): every repo capture (and the public corpus when ../shared is
there) is classified both ways, and every output column of decide() must be equal; the
captures recorded with a TLS key log beside them are classified with it too (their
connections then carry decrypted HTTP and TLS closes)."""

from pathlib import Path

import numpy as np
import pytest

import pcapsense
import pcapsense.classify as classify
from conftest import keylog_of

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ROOT.parent / "shared" / "corpus" / "public" / "pcaps"
SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz")
BROKEN = {"not_a_capture.pcap", "zero_bytes.pcap"}


def _captures():
    found = []
    for base in (ROOT / "sample_pcaps", ROOT / "tests" / "captures", PUBLIC):
        if base.exists():
            found += sorted(p for p in base.rglob("*") if p.name.endswith(SUFFIXES) and p.name not in BROKEN)
    return found


def _differences(a: dict, b: dict) -> list:
    bad = []
    for k in a:
        x, y = a[k], b[k]
        if x.dtype.kind == "f":
            same = (x == y) | (np.isnan(x) & np.isnan(y))
        else:
            same = np.array([p == q for p, q in zip(x.tolist(), y.tolist())], dtype=bool)
        bad += [(k, int(i), x[i], y[i]) for i in np.flatnonzero(~same)[:3]]
    return bad


def test_columns_decide_as_the_per_row_rules(monkeypatch):
    decide = classify.decide
    seen = {"rows": 0, "vector_rows": 0, "differences": []}
    vector_decide = classify.vector.decide

    def counting(df, rows, *args):
        seen["vector_rows"] += len(rows)
        return vector_decide(df, rows, *args)

    def both(df, keys, servers, cap_end, per_row=False):
        got = decide(df, keys, servers, cap_end)
        want = decide(df, keys, servers, cap_end, per_row=True)
        seen["rows"] += len(df)
        seen["differences"] += [(df.attrs.get("path"), *d) for d in _differences(got, want)]
        return got

    quiet = classify.vector._quiet

    def counting_quiet(c):
        got = quiet(c)
        seen["quiet_rows"] = seen.get("quiet_rows", 0) + int(got.sum())
        return got

    monkeypatch.setattr(classify, "decide", both)
    monkeypatch.setattr(classify.vector, "decide", counting)
    monkeypatch.setattr(classify.vector, "_quiet", counting_quiet)
    caps = _captures()
    assert len(caps) >= 80
    for p in caps:
        pcapsense.analyze(str(p))
        if keylog_of(p):
            pcapsense.analyze(str(p), keylog=keylog_of(p))
    assert seen["differences"] == []
    assert seen["vector_rows"] >= 300          # the columns decided a real share of the rows
    assert seen["quiet_rows"] >= 5             # and rows only `incomplete` can claim (the gate: below)


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_tables(n):
    """No rows, one row: the column path is not bothered by empty masks."""
    from pcapsense.classify import vector
    import pandas as pd
    out = {k: np.empty(n, dtype=object) for k in ("cause", "evidence_frames", "alternatives", "cause_detail",
                                                  "phase", "closer")}
    out["confidence"], out["_idle_s"] = np.empty(n), np.full(n, np.nan)
    df = pd.DataFrame({"close_kind": pd.Categorical(["none"] * n, categories=["FIN", "RST", "none"]),
                       "conn_state": pd.Categorical(["S0"] * n), "closer": pd.Categorical(["none"] * n),
                       "last_frame": np.arange(1, n + 1), "abnormal": np.zeros(n, dtype=bool)})
    vector.decide(df, np.arange(n), out, lambda ix: [0] * len(ix), 1.0)
    assert out["cause"].tolist() == ["incomplete"] * n
    assert out["evidence_frames"].tolist() == ["1"] * n


def _near_the_quiet_gate(path):
    """Connections on both sides of vector._quiet, each from its own client: SYN only;
    SYN retransmitted; SYN and SYN-ACK; a full handshake, then nothing; a handshake and
    one byte of data; a handshake and the client's FIN; a SYN answered by RST; a
    handshake whose SYN-ACK is retransmitted; the server's data retransmitted."""
    from scapy.all import IP, TCP, Ether, Raw, wrpcap
    t = [1_700_000_000.0]
    out = []

    def pkt(i, to_server, flags, seq, ack=0, data=b"", dt=0.001):
        cli, srv = f"198.51.100.{i}", "192.0.2.80"
        ip = IP(src=cli, dst=srv) if to_server else IP(src=srv, dst=cli)
        tcp = TCP(sport=40000 + i, dport=443, flags=flags, seq=seq, ack=ack) if to_server else \
            TCP(sport=443, dport=40000 + i, flags=flags, seq=seq, ack=ack)
        p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip / tcp / (Raw(data) if data else b"")
        p.time = t[0]
        t[0] += dt
        out.append(p)

    def handshake(i, synack_twice=False):
        pkt(i, True, "S", 1000)
        pkt(i, False, "SA", 5000, 1001)
        if synack_twice:
            pkt(i, False, "SA", 5000, 1001, dt=1.0)
        pkt(i, True, "A", 1001, 5001)

    pkt(1, True, "S", 1000)
    pkt(2, True, "S", 1000)
    pkt(2, True, "S", 1000, dt=1.0)
    pkt(3, True, "S", 1000)
    pkt(3, False, "SA", 5000, 1001)
    handshake(4)
    handshake(5)
    pkt(5, True, "PA", 1001, 5001, b"x")
    handshake(6)
    pkt(6, True, "FA", 1001, 5001)
    pkt(7, True, "S", 1000)
    pkt(7, False, "RA", 0, 1001)
    handshake(8, synack_twice=True)
    handshake(9)
    pkt(9, False, "PA", 5001, 1001, b"hello")
    pkt(9, False, "PA", 5001, 1001, b"hello", dt=0.3)
    wrpcap(str(path), out)
    return path


def test_the_quiet_gate_against_the_per_row_rules(tmp_path, monkeypatch):
    """Rows only `incomplete` can claim skip the other rules (vector._quiet): each kind
    of row near that line is decided as the per-row rules decide it, and the gate lets
    through only the open connections without payload or retransmissions."""
    decide = classify.decide
    got = {}

    def both(df, keys, servers, cap_end, per_row=False):
        a = decide(df, keys, servers, cap_end)
        b = decide(df, keys, servers, cap_end, per_row=True)
        got["differences"] = _differences(a, b)
        got["cause"] = dict(zip(df["client_ip"].tolist(), a["cause"].tolist()))
        return a

    quiet = classify.vector._quiet
    monkeypatch.setattr(classify, "decide", both)
    monkeypatch.setattr(classify.vector, "_quiet", lambda c: got.setdefault("quiet", quiet(c)))
    res = pcapsense.analyze(str(_near_the_quiet_gate(tmp_path / "gate.pcap")))
    assert got["differences"] == []
    assert len(res.connections) == 9
    ips = res.connections["client_ip"].to_numpy()
    quiet_ips = sorted(ips[got["quiet"]].tolist()) if len(got["quiet"]) == len(ips) else None
    # (8: a SYN-ACK sent twice is not among `retransmissions`, which network-loss reads)
    assert quiet_ips == ["198.51.100.1", "198.51.100.3", "198.51.100.4", "198.51.100.8"]
    assert got["cause"]["198.51.100.2"] == "network-loss"
    assert got["cause"]["198.51.100.7"] == "connection-refused"
    assert {got["cause"][f"198.51.100.{i}"] for i in (1, 3, 4, 8)} == {"incomplete"}
