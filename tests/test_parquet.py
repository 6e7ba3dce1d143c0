"""--format parquet: the tables round-trip with their types (for DuckDB/Spark/pandas)."""

import json

import pandas as pd
import pytest

import pcapsense
from conftest import ROOT

pytest.importorskip("pyarrow")
RACE = ROOT / "sample_pcaps" / "captures" / "la-keepalive-race-httpclient.pcap"


def test_parquet_tables_round_trip(tmp_path):
    from typer.testing import CliRunner
    from pcapsense.cli import app
    out = tmp_path / "tables"
    res = CliRunner().invoke(app, ["analyze", str(RACE), "-f", "parquet", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    a = pcapsense.analyze(RACE)
    conns = pd.read_parquet(out / "connections.parquet")
    assert len(conns) == len(a.connections)
    assert str(conns.start.dtype) == "datetime64[ns, UTC]"
    assert str(conns.close_frame.dtype) == "Int64" and str(conns.cause.dtype) == "category"
    assert list(conns.cause.astype(str)) == list(a.connections.cause.astype(str))
    http = pd.read_parquet(out / "http.parquet")
    assert len(http) == 9 and str(http.status.dtype) == "Int64"
    assert len(pd.read_parquet(out / "transitions.parquet")) == len(a.transitions)
    assert json.loads((out / "capture.json").read_text())["frames"] == a.capture.frames


def test_parquet_needs_a_directory():
    from typer.testing import CliRunner
    from pcapsense.cli import app
    res = CliRunner().invoke(app, ["analyze", str(RACE), "-f", "parquet", "-q"])
    assert res.exit_code == 2


def test_tls_handshakes_table_round_trips(tmp_path):
    """Analysis.tls and tls.parquet: one row per TLS handshake, the certificate
    flattened with typed validity times, queryable without the connections table."""
    from typer.testing import CliRunner
    from pcapsense.cli import app
    cap = ROOT / "sample_pcaps" / "captures" / "lb-tls-cert-rejected-requests.pcap"
    a = pcapsense.analyze(cap)
    tls = a.tls
    assert len(tls) == int(a.connections["tls"].fillna(False).sum()) > 0
    row = tls.iloc[0]
    assert row["sni"] == "localhost" and row["alert"] == "unknown_ca" and row["alert_by"] == "client"
    assert row["cause"] == "tls-certificate-rejected"
    out = tmp_path / "tables"
    res = CliRunner().invoke(app, ["analyze", str(cap), "-f", "parquet", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    back = pd.read_parquet(out / "tls.parquet")
    assert list(back.columns) == list(tls.columns) and len(back) == len(tls)
    assert str(back.client_hello_frame.dtype) == "Int64" and str(back.handshake_complete.dtype) == "boolean"
    assert str(back.cert_not_after.dtype).startswith("datetime64") and "UTC" in str(back.cert_not_after.dtype)
    with_cert = pcapsense.analyze(ROOT / "sample_pcaps" / "captures" / "lb-tls-cert-rejected-aiohttp.pcap").tls
    assert with_cert["cert_subject"].iloc[0] == "CN=lab.test" and bool(with_cert["cert_self_signed"].iloc[0])
    assert with_cert["cert_not_after"].iloc[0] > with_cert["cert_not_before"].iloc[0]


def test_a_fleet_of_results_queried_with_duckdb(tmp_path):
    """One Parquet directory per capture (per host), queried together with DuckDB: the
    types survive (timestamps, nullable integers, dictionary-encoded causes) and the
    counts match pandas."""
    duckdb = pytest.importorskip("duckdb")
    from typer.testing import CliRunner
    from pcapsense.cli import app
    caps = [ROOT / "sample_pcaps" / "captures" / n for n in
            ("la-keepalive-race-httpclient.pcap", "lb-tls-cert-rejected-requests.pcap",
             "lb-pool-overflow-urllib3.pcap")]
    want = {}
    for i, cap in enumerate(caps):
        res = CliRunner().invoke(app, ["analyze", str(cap), "-f", "parquet", "-o", str(tmp_path / f"host{i}"), "-q"])
        assert res.exit_code == 0, res.output
        for c, n in pcapsense.analyze(cap).connections["cause"].astype(str).value_counts().items():
            want[c] = want.get(c, 0) + n
    glob = str(tmp_path / "*" / "connections.parquet")
    got = dict(duckdb.sql(f"SELECT cause, count(*) FROM read_parquet('{glob}', filename=true) "
                          f"GROUP BY cause").fetchall())
    assert got == want
    row = duckdb.sql(f"SELECT min(start), max(close_frame), count(DISTINCT filename) "
                     f"FROM read_parquet('{glob}', filename=true)").fetchall()[0]
    assert row[0].tzinfo is not None and isinstance(row[1], int) and row[2] == 3
    tls = duckdb.sql(f"SELECT sni, alert, cause FROM read_parquet('{tmp_path}/*/tls.parquet') "
                     f"WHERE alert IS NOT NULL").fetchall()
    assert ("localhost", "unknown_ca", "tls-certificate-rejected") in tls


def test_every_capture_writes_the_same_parquet_schema(tmp_path):
    """A fleet's files combine only if a table has one schema whatever the capture held
    (TLS or not, HTTP or not, certificates or not): checked over every repo capture."""
    import pyarrow.parquet as pq
    from conftest import repo_captures
    from pcapsense.render import parquet
    seen: dict = {}
    for i, cap in enumerate(repo_captures()):
        out = tmp_path / str(i)
        parquet.write(pcapsense.analyze(cap), str(out))
        for table in ("connections", "http", "tls", "transitions"):
            schema = pq.read_schema(out / f"{table}.parquet").remove_metadata()
            first = seen.setdefault(table, (cap.name, schema))
            assert schema.equals(first[1]), f"{table}: {cap.name} differs from {first[0]}"
    assert len(seen) == 4


def test_a_capture_without_tcp_has_the_whole_schema(tmp_path):
    """A capture with no TCP connection at all (UDP only) still gives every column of
    the connections table with its type, and its Parquet files the schema of every
    other capture's: a fleet's queries must not fail on the one quiet host."""
    import pyarrow.parquet as pq
    from scapy.all import IP, UDP, Ether, wrpcap
    from pcapsense.render import parquet
    quiet = tmp_path / "udp.pcap"
    wrpcap(str(quiet), [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5353, dport=53) / b"q"])
    empty, full = pcapsense.analyze(str(quiet)), pcapsense.analyze(RACE)
    assert len(empty.connections) == 0 and len(full.connections) > 0
    assert list(empty.connections.columns) == list(full.connections.columns)
    assert {c: str(t) for c, t in empty.connections.dtypes.items()} == \
        {c: str(t) for c, t in full.connections.dtypes.items()}
    parquet.write(empty, str(tmp_path / "empty"))
    parquet.write(full, str(tmp_path / "full"))
    for table in ("connections", "http", "tls", "transitions"):
        a = pq.read_schema(tmp_path / "empty" / f"{table}.parquet").remove_metadata()
        b = pq.read_schema(tmp_path / "full" / f"{table}.parquet").remove_metadata()
        assert a.equals(b), table


def test_row_groups_do_not_change_the_tables(tmp_path, monkeypatch):
    """The tables are written a row group at a time with the whole table's schema: a
    text column empty in one group (TLS on some connections only, a proxy's CONNECT
    status) keeps its type, and the file reads back as the one-group file does."""
    import pyarrow.parquet as pq
    from pcapsense.render import parquet
    a = pcapsense.analyze([str(ROOT / "sample_pcaps" / "captures" / n) for n in (
        "lb-proxy-disconnect-tinyproxy.pcap", "la-graceful-nginx.pcap.gz", "lb-http2-goaway-maxreq.pcapng",
        "lb-tls-cert-rejected-requests.pcap", "lb-tls-handshake-failure-openssl.pcapng")])
    parquet.write(a, str(tmp_path / "one"))
    monkeypatch.setattr(parquet, "ROW_GROUP", 2)
    parquet.write(a, str(tmp_path / "many"))
    for name in ("connections", "http", "tls", "transitions"):
        one, many = pq.ParquetFile(tmp_path / "one" / f"{name}.parquet"), pq.ParquetFile(tmp_path / "many" / f"{name}.parquet")
        assert many.metadata.num_rows == one.metadata.num_rows > 0
        if many.metadata.num_rows > 2:
            assert many.metadata.num_row_groups > 1
        t1, t2 = one.read(), many.read()
        assert t2.schema.equals(t1.schema, check_metadata=True) and t2.equals(t1)
