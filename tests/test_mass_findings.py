"""A mass of identical failures is one finding: a SYN flood, a refused flood, a port scan
and an address scan each get one line in the verdict (terminal, Markdown, HTML) with a
compact Wireshark filter, not a per-connection list; the JSON keeps every connection;
captures without one render as before."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

import pcapsense
from pcapsense.cli import app
from pcapsense.render import findings, html, markdown, terminal
from pcapsense.render.findings import ADDRESS_SCAN_HOSTS, MASS_CONNECTIONS, PORT_SCAN_PORTS, mass_findings

from conftest import ROOT, synflood_module

runner = CliRunner()
NOTE = "the per-connection rows are in the JSON/Parquet output"
SYN_FILTER = "ip.dst==192.0.2.80 && tcp.dstport==443 && tcp.flags.syn==1 && tcp.flags.ack==0"


@pytest.fixture(scope="module")
def syn_flood(tmp_path_factory):
    """2,000 SYNs from 2,000 sources to 192.0.2.80:443 over 60 s (140 KB), nothing answered."""
    mod = synflood_module()
    path = tmp_path_factory.mktemp("mass") / "syn-2k.pcap"
    n = 2000
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        fh.write(mod.chunk(np.random.default_rng(1), 0, n, n, 60.0, 1_795_000_000))
    return path


def _write(path, packets):
    from scapy.all import wrpcap
    wrpcap(str(path), packets)
    return path


def _pkts():
    from scapy.all import IP, TCP, Ether
    t = [1_700_000_000.0]

    def pkt(src, dst, sport, dport, flags, seq=1000, ack=0, dt=0.0005):
        p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst) / \
            TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
        p.time = t[0]
        t[0] += dt
        return p
    return pkt


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """198.51.100.7 is refused on 100 ports of 192.0.2.10 (a port scan); 198.51.100.9
    sends one SYN to port 22 of 30 hosts, unanswered (an address scan); one ordinary
    refused connection to 192.0.2.30:9000."""
    pkt = _pkts()
    out = []
    for i, port in enumerate(range(1, 101)):
        out.append(pkt("198.51.100.7", "192.0.2.10", 40000 + i, port, "S", seq=1000 + i))
        out.append(pkt("192.0.2.10", "198.51.100.7", port, 40000 + i, "RA", seq=0, ack=1001 + i))
    for i in range(30):
        out.append(pkt("198.51.100.9", f"192.0.2.{100 + i}", 50000 + i, 22, "S", seq=7000 + i))
    out.append(pkt("198.51.100.50", "192.0.2.30", 41000, 9000, "S", seq=5000))
    out.append(pkt("192.0.2.30", "198.51.100.50", 9000, 41000, "RA", seq=0, ack=5001))
    return _write(tmp_path_factory.mktemp("mass") / "scans.pcap", out)


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """1,200 connections from 3 clients to 192.0.2.20:8080, each refused (SYN, RST/ACK),
    then one ordinary refused connection to 192.0.2.30:9000."""
    pkt = _pkts()
    out = []
    for i in range(1200):
        cli = f"203.0.113.{1 + i % 3}"
        out.append(pkt(cli, "192.0.2.20", 20000 + i, 8080, "S", seq=100 + i, dt=0.00025))
        out.append(pkt("192.0.2.20", cli, 8080, 20000 + i, "RA", seq=0, ack=101 + i, dt=0.00025))
    out.append(pkt("198.51.100.50", "192.0.2.30", 41000, 9000, "S", seq=5000))
    out.append(pkt("192.0.2.30", "198.51.100.50", 9000, 41000, "RA", seq=0, ack=5001))
    return _write(tmp_path_factory.mktemp("mass") / "refused.pcap", out)


def _terminal(path) -> str:
    buf = io.StringIO()
    terminal.render(pcapsense.analyze(str(path)), Console(file=buf, width=160, color_system=None, highlight=False))
    return buf.getvalue()


def _verdict_block(text: str) -> str:
    """The terminal verdict: from 'Verdict' to the connections table's header."""
    start = text.index("Verdict")
    end = text.index("stream  client -> server", start)
    return text[start:end]


# -- the SYN flood (bench/make_synflood.py) ---------------------------------------------

def test_syn_flood_terminal(syn_flood):
    res = runner.invoke(app, ["analyze", str(syn_flood), "-q"])
    assert res.exit_code == 0, res.output
    verdict = _verdict_block(res.output).splitlines()
    assert verdict == [
        "Verdict",
        "  2,000 connections to 192.0.2.80:443 ended unanswered after one SYN each, from 2,000 distinct sources "
        f"over 60.0 s (33/s): a SYN flood (or a scan); {NOTE}",
        f"    Wireshark: {SYN_FILTER}",
    ]


def test_syn_flood_markdown(syn_flood):
    res = runner.invoke(app, ["analyze", str(syn_flood), "-q", "-f", "markdown"])
    assert res.exit_code == 0, res.output
    md = res.output
    verdict = md[md.index("#### Verdict"):md.index("#### Servers")].splitlines()
    assert verdict == [
        "#### Verdict", "",
        "- **2,000 connections to 192.0.2.80:443 ended unanswered after one SYN each, from 2,000 distinct sources "
        f"over 60.0 s (33/s): a SYN flood (or a scan)**; {NOTE}",
        f"  - Wireshark: `{SYN_FILTER}`", "",
    ]
    assert "No abnormal disconnect" not in md and "tcp.stream in" not in md


def test_syn_flood_html_and_json_rows(syn_flood, tmp_path):
    page = html.render(pcapsense.analyze(str(syn_flood)), charts=False)
    verdict = page[page.index('<section id="verdict">'):page.index('<section id="capture">')]
    assert "2,000 connections to 192.0.2.80:443 ended unanswered after one SYN each" in verdict
    assert "a SYN flood (or a scan)" in verdict and NOTE in verdict
    assert SYN_FILTER.replace("&", "&amp;") in verdict
    assert "No abnormal disconnect" not in verdict and "tcp.stream in" not in verdict
    # the per-connection rows stay in the JSON
    out = tmp_path / "out.json"
    res = runner.invoke(app, ["analyze", str(syn_flood), "-q", "-f", "json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert len(doc["connections"]) == 2000
    assert {c["conn_state"] for c in doc["connections"]} == {"S0"}


# -- scans and a refused flood (scapy) --------------------------------------------------

def test_port_scan_and_address_scan(scans):
    verdict = _verdict_block(_terminal(scans)).splitlines()
    assert verdict[:5] == [
        "Verdict",
        "  100 connections from 198.51.100.7 to 100 ports of 192.0.2.10 were refused (a RST to the SYN) "
        f"over 0.099 s (1,000/s): a port scan; {NOTE}",
        "    Wireshark: ip.dst==198.51.100.7 && ip.src==192.0.2.10 && tcp.flags.reset==1",
        "  30 connections from 198.51.100.9 to port 22 of 30 hosts ended unanswered after one SYN each "
        f"over 0.014 s (2,000/s): an address scan (a sweep of port 22); {NOTE}",
        "    Wireshark: ip.src==198.51.100.9 && tcp.dstport==22 && tcp.flags.syn==1 && tcp.flags.ack==0",
    ]
    # the one ordinary refused connection is still its own group, as before
    assert verdict[5] == "  1 of 1 connections to 192.0.2.30:9000 ended in connection-refused"
    assert verdict[-1] == "    Wireshark: tcp.stream in {130}"
    assert sum("tcp.stream in" in ln for ln in verdict) == 1
    assert "more (server, cause) groups" not in "\n".join(verdict)


def test_scans_markdown(scans):
    md = markdown.render(pcapsense.analyze(str(scans)))
    verdict = md[md.index("#### Verdict"):md.index("#### Servers")]
    assert ("- **100 connections from 198.51.100.7 to 100 ports of 192.0.2.10 were refused (a RST to the SYN) "
            f"over 0.099 s (1,000/s): a port scan**; {NOTE}") in verdict
    assert "  - Wireshark: `ip.dst==198.51.100.7 && ip.src==192.0.2.10 && tcp.flags.reset==1`" in verdict
    assert "an address scan (a sweep of port 22)**" in verdict
    # the ordinary refused connection, counted alone
    assert "- **1 of 131** connections ended in **connection-refused** (to 192.0.2.30:9000 (1))" in verdict
    assert verdict.count("tcp.stream in") == 1


def test_refused_flood_from_few_clients(refused):
    verdict = _verdict_block(_terminal(refused)).splitlines()
    assert verdict[1] == (
        "  1,200 connections to 192.0.2.20:8080 were refused (a RST to the SYN), from 3 distinct sources over "
        f"0.600 s (1,999/s): nothing listens on the port: clients retrying a stopped service, or a flood; {NOTE}")
    assert verdict[2] == "    Wireshark: ip.src==192.0.2.20 && tcp.srcport==8080 && tcp.flags.reset==1"
    assert verdict[3] == "  1 of 1 connections to 192.0.2.30:9000 ended in connection-refused"
    assert sum("tcp.stream in" in ln for ln in verdict) == 1
    md = markdown.render(pcapsense.analyze(str(refused)))
    assert "- **1,200 connections to 192.0.2.20:8080 were refused (a RST to the SYN), from 3 distinct sources" in md
    assert "- **1 of 1201** connections ended in **connection-refused** (to 192.0.2.30:9000 (1))" in md


# -- captures without a flood or a scan: the verdict as before --------------------------

NORMAL = ["la-connection-refused-lo.pcap", "la-connection-refused-veth.pcap.gz", "lb-network-loss-blackhole.pcap",
          "lb-pool-overflow-requests.pcap", "la-keepalive-race-httpclient.pcap", "la-graceful-nginx.pcap.gz"]


@pytest.mark.parametrize("name", NORMAL)
def test_normal_capture_verdict_unchanged(name, monkeypatch):
    a = pcapsense.analyze(str(ROOT / "sample_pcaps" / "captures" / name))
    assert not mass_findings(a.connections)
    buf = io.StringIO()
    terminal.render(a, Console(file=buf, width=160, color_system=None, highlight=False))
    md, page = markdown.render(a), html.render(a, charts=False)
    # the same output as a renderer that never looks for floods or scans
    monkeypatch.setattr(findings, "mass_findings", lambda df: findings.Mass(rows=np.zeros(len(df), dtype=bool)))
    old = io.StringIO()
    terminal.render(a, Console(file=old, width=160, color_system=None, highlight=False))
    assert buf.getvalue() == old.getvalue()
    assert md == markdown.render(a)
    assert _undated(page) == _undated(html.render(a, charts=False))


def _undated(page: str) -> str:
    """The HTML report without its generation time."""
    head, tail = page.split("generated ", 1)
    return head + tail.split(" by pcapsense", 1)[1]


# -- the thresholds, on frames built directly -------------------------------------------

def _frame(client, server, port, state="S0", history="S", cause="incomplete", packets=1, step_ms=1):
    n = len(client)
    return pd.DataFrame({
        "stream": np.arange(n), "client_ip": client, "server_ip": server, "server_port": port,
        "conn_state": pd.Categorical([state] * n), "history": [history] * n,
        "cause": pd.Categorical([cause] * n), "packets": np.full(n, packets),
        "start": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(n) * step_ms, unit="ms"),
        "abnormal": np.full(n, cause not in ("incomplete", "graceful")),
    })


def test_thresholds():
    n = MASS_CONNECTIONS
    assert mass_findings(_frame([f"10.0.{i // 256}.{i % 256}" for i in range(n - 1)], ["192.0.2.1"] * (n - 1),
                                [443] * (n - 1))).total == 0
    m = mass_findings(_frame([f"10.0.{i // 256}.{i % 256}" for i in range(n)], ["192.0.2.1"] * n, [443] * n))
    assert m.total == 1 and m.rows.all() and m.findings[0].kind == "port-flood"
    k = PORT_SCAN_PORTS
    assert not mass_findings(_frame(["10.9.9.9"] * (k - 1), ["192.0.2.1"] * (k - 1), list(range(1, k)),
                                    "REJ", "Sr", "connection-refused", 2))
    m = mass_findings(_frame(["10.9.9.9"] * k, ["192.0.2.1"] * k, list(range(1, k + 1)), "REJ", "Sr",
                             "connection-refused", 2))
    assert m.findings[0].kind == "port-scan" and m.findings[0].ports == k
    h = ADDRESS_SCAN_HOSTS
    assert not mass_findings(_frame(["10.9.9.9"] * (h - 1), [f"192.0.2.{i}" for i in range(h - 1)], [22] * (h - 1)))
    m = mass_findings(_frame(["10.9.9.9"] * h, [f"192.0.2.{i}" for i in range(h)], [22] * h))
    assert m.findings[0].kind == "address-scan" and m.findings[0].hosts == h


def test_completed_handshakes_are_not_a_flood():
    n = MASS_CONNECTIONS
    clients = [f"10.1.{i // 256}.{i % 256}" for i in range(n)]
    assert not mass_findings(_frame(clients, ["192.0.2.1"] * n, [443] * n, "S1", "ShA", "incomplete", 3))
    assert not mass_findings(_frame(clients, ["192.0.2.1"] * n, [443] * n, "SF", "ShADadFf", "graceful", 10))
    m = mass_findings(_frame(clients, ["192.0.2.1"] * n, [443] * n, "S1", "Sh", "incomplete", 2))
    assert m.findings[0].what == "a SYN flood (or a scan)"
    assert m.findings[0].head().endswith("got a SYN/ACK that the client never acknowledged, from 1,000 distinct "
                                         "sources over 0.999 s (1,000/s)")


def test_ipv6_flood_is_escaped_and_filtered():
    n = MASS_CONNECTIONS
    df = _frame([f"2001:db8:1::{i:x}" for i in range(n)], ["2001:db8::80"] * n, [443] * n, "S0", "S", "network-loss",
                3)
    f = mass_findings(df).findings[0]
    assert f.wireshark == "ipv6.dst==2001:db8::80 && tcp.dstport==443 && tcp.flags.syn==1 && tcp.flags.ack==0"
    assert f.head(markdown.esc).startswith(
        r"1,000 connections to \[2001:db8::80\]:443 ended unanswered (3,000 SYNs in all, retransmissions included)")
    assert f.what == "a SYN flood (or a scan)"


def test_many_floods_are_counted():
    parts = [_frame([f"10.{s}.{i // 256}.{i % 256}" for i in range(MASS_CONNECTIONS)],
                    [f"192.0.2.{s}"] * MASS_CONNECTIONS, [80] * MASS_CONNECTIONS) for s in range(10)]
    df = pd.concat(parts, ignore_index=True)
    m = mass_findings(df)
    assert m.total == 10 and len(m.findings) == findings.MAX_SHOWN and m.more == 2 and m.rows.all()
    buf = io.StringIO()
    terminal._mass_lines(m, Console(file=buf, width=160, color_system=None))
    assert buf.getvalue().splitlines()[-1] == "  ... and 2 more floods or scans"


def test_flood_and_normal_connections_terminal():
    n = MASS_CONNECTIONS
    flood = _frame([f"10.2.{i // 256}.{i % 256}" for i in range(n)], ["192.0.2.1"] * n, [443] * n)
    normal = _frame(["198.51.100.1"] * 5, ["192.0.2.2"] * 5, [80] * 5, "SF", "ShADadFf", "graceful", 10)
    df = pd.concat([flood, normal], ignore_index=True)
    buf = io.StringIO()
    terminal._verdict(df, Console(file=buf, width=160, color_system=None, highlight=False))
    assert buf.getvalue().splitlines() == [
        "Verdict",
        "  1,000 connections to 192.0.2.1:443 ended unanswered after one SYN each, from 1,000 distinct sources "
        f"over 0.999 s (1,000/s): a SYN flood (or a scan); {NOTE}",
        "    Wireshark: ip.dst==192.0.2.1 && tcp.dstport==443 && tcp.flags.syn==1 && tcp.flags.ack==0",
        "  no other abnormal disconnect: the other 5 connections ended normally or are still open",
    ]
