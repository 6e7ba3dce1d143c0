"""Memory bounded by connections: a run that sees more connections than its budget stops
reading (parallel.TooManyConnections, with an estimate of how many there are), and the
CLI reads the capture again in passes (bounded.passes_for): the report is the one of
an in-memory run, byte for byte, whatever the count."""

from __future__ import annotations

import functools
import json
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

import pcapsense
from pcapsense import bounded, parallel
from pcapsense.cli import app
from pcapsense.parallel import TooManyConnections

from conftest import synflood_module

runner = CliRunner()


@pytest.fixture(scope="module")
def flood(tmp_path_factory):
    """3,000 SYNs from 3,000 sources, nothing answered (220 KB)."""
    path = tmp_path_factory.mktemp("budget") / "syn-3k.pcap"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        fh.write(synflood_module().chunk(np.random.default_rng(7), 0, 3000, 3000, 30.0, 1_795_000_000))
    return path


@pytest.fixture(scope="module")
def late_flood(tmp_path_factory):
    """One long connection (1,500 packets), then 3,000 SYNs: the connections come late,
    so what was read when the budget was passed underestimates them."""
    from scapy.all import IP, TCP, Ether, wrpcap
    t0 = 1_795_000_000.0
    pkts = []
    for i in range(1500):
        p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="198.51.100.1", dst="192.0.2.80") / \
            TCP(sport=40000, dport=443, flags="S" if i == 0 else "A", seq=1000 + (i > 0))
        p.time = t0 + i * 0.001
        pkts.append(p)
    path = tmp_path_factory.mktemp("budget") / "late.pcap"
    wrpcap(str(path), pkts)
    with open(path, "ab") as fh:
        fh.write(synflood_module().chunk(np.random.default_rng(8), 0, 3000, 3000, 30.0, 1_795_000_002))
    return path


@pytest.fixture
def small_chunks(monkeypatch):
    """The reader's chunks at 16 KiB (8 MiB by default): the budget is checked after
    each chunk, so a small capture gets checked as it is read."""
    monkeypatch.setattr(parallel.reader, "run", functools.partial(parallel.reader.run, chunk_bytes=16384))


def _json(args) -> tuple[str, str]:
    res = runner.invoke(app, ["analyze", *map(str, args), "-f", "json"])
    assert res.exit_code == 0, res.output
    return res.stdout, res.stderr


@pytest.mark.parametrize("jobs", [1, 2])
def test_analyze_stops_at_the_budget_and_estimates(flood, small_chunks, jobs):
    with pytest.raises(TooManyConnections) as got:
        pcapsense.analyze(str(flood), connection_budget=500, jobs=jobs)
    exc = got.value
    assert exc.shards == jobs and exc.streams > 500 // jobs and exc.fraction < 0.5
    assert 2400 <= exc.estimate() <= 3600              # the flood is even: a fair estimate
    assert "connections" in str(exc)
    assert len(pcapsense.analyze(str(flood), connection_budget=5000, jobs=jobs).connections) == 3000


def test_the_cli_reads_in_passes_and_writes_the_same_report(flood, small_chunks, monkeypatch):
    want, _ = _json([flood, "-q", "--passes", "1"])
    monkeypatch.setattr(bounded, "CONNECTION_BUDGET", 500)
    got, err = _json([flood, "--jobs", "1"])
    assert got == want
    doc = json.loads(got)
    assert doc["capture"]["connections"] == 3000
    assert err.count("reading the capture again in") == 1 and "more than 500 at once" in err
    estimate = int(err.split("about ")[1].split()[0].replace(",", ""))
    assert 2400 <= estimate <= 3600
    assert int(err.split("again in ")[1].split()[0]) == bounded.passes_for(
        TooManyConnections(estimate, 1.0, 1), 500, 1)
    quiet, err = _json([flood, "--jobs", "1", "-q"])
    assert quiet == want and err == ""


def test_a_pass_over_the_budget_is_read_again_in_more(late_flood, small_chunks, monkeypatch):
    want, _ = _json([late_flood, "-q", "--passes", "1"])
    monkeypatch.setattr(bounded, "CONNECTION_BUDGET", 500)
    got, err = _json([late_flood, "--jobs", "1"])
    assert got == want
    assert err.count("reading the capture again in") >= 2          # the first estimate was too low
    counts = [int(line.split("again in ")[1].split()[0]) for line in err.splitlines() if "again in" in line]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_no_budget_with_passes_given_or_standard_input(flood, small_chunks, monkeypatch):
    monkeypatch.setattr(bounded, "CONNECTION_BUDGET", 500)
    got, err = _json([flood, "--passes", "2", "--jobs", "1"])
    assert "again in" not in err and json.loads(got)["capture"]["connections"] == 3000
    res = runner.invoke(app, ["analyze", "-", "-f", "json"], input=flood.read_bytes())
    assert res.exit_code == 0 and "again in" not in res.stderr


def test_passes_for():
    exc = TooManyConnections(150_001, 0.15, 1)           # 1M connections in all
    assert exc.estimate() == 1_000_007
    assert bounded.passes_for(exc, 150_000, 1) == 8      # 1.15M / 150k
    assert bounded.passes_for(exc, 150_000, 2) == 16     # two passes read at once: half each
    assert bounded.passes_for(TooManyConnections(10, 1.0, 1), 150_000, 1) == 2
