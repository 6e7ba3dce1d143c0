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
