"""The classifier's lines in mixed traffic, crafted on both sides of each
(tests/captures/make_boundaries.py: what each scenario is and why): a full pool vs
sessions ending, a leak vs a pool's lazy close, a crash vs a timeout, a race vs a
rejection, TLS read without keys, a response cut by the snaplen."""

import importlib.util
import pathlib

import pytest

import pcapsense

HERE = pathlib.Path(__file__).parent / "captures"
_spec = importlib.util.spec_from_file_location("make_boundaries", HERE / "make_boundaries.py")
mb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mb)


@pytest.mark.parametrize("name", list(mb.EXPECT))
def test_boundary(name):
    df = pcapsense.analyze(HERE / "boundaries" / f"{name}.pcap").connections
    got = {int(r.client_port): str(r.cause) for r in df.itertuples()}
    want = mb.EXPECT[name][1]
    assert {p: got.get(p) for p in want} == want, df[["client_port", "cause", "cause_detail"]].to_string()


def test_boundary_captures_are_what_the_generator_writes(tmp_path, monkeypatch):
    """The committed captures are the generator's output (regenerated, byte for byte)."""
    monkeypatch.setattr(mb, "OUT", str(tmp_path))
    mb.main()
    for name in mb.EXPECT:
        assert (tmp_path / f"{name}.pcap").read_bytes() == (HERE / "boundaries" / f"{name}.pcap").read_bytes(), name


def test_tls_idle_close_is_measured_to_the_close_notify():
    r = pcapsense.analyze(HERE / "boundaries" / "tls-idle.pcap").connections.iloc[0]
    # the wire's first close is the client's RST; the server's close_notify decided it
    assert (r.closer, r.close_kind, r.tls_close_by) == ("client", "RST", "server")
    assert abs(r.idle_before_close_s - 2.0) < 0.001
    assert r.tls_close_frame > 0


def test_inferences_are_marked_and_worded():
    df = pcapsense.analyze(HERE / "boundaries" / "pool-full.pcap").connections
    pool = df[df.cause == "pool-overflow"]
    assert pool.inferred.all() and (pool.confidence <= 0.8).all()
    assert pool.cause_detail.str.startswith("inferred:").all()
    assert not df[df.cause == "graceful"].inferred.any()


def test_server_abort_names_the_burst():
    df = pcapsense.analyze(HERE / "boundaries" / "abort-burst.pcap").connections
    assert (df.server_rst_burst == 3).all()
    assert df.cause_detail.str.contains("3 connections to it reset within 10 ms").all()
