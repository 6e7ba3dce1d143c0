"""The cause classifier: one crafted capture per cause at the boundaries between
neighbouring causes (tests/captures/make_causes.py), plus the rules' details."""

import pathlib

import pytest

import pcapsense
from pcapsense.classify import advice
from pcapsense.classify.rules import RULES

CAUSES_DIR = pathlib.Path(__file__).parent / "captures" / "causes"
CRAFTED = sorted(CAUSES_DIR.glob("*.pcap"))


@pytest.mark.parametrize("path", CRAFTED, ids=[p.stem for p in CRAFTED])
def test_crafted_cause(path):
    want = path.name.split("__")[0]
    df = pcapsense.analyze(path).connections
    row = df[df.cause == want]
    assert len(row), df[["stream", "cause", "cause_detail"]]
    r = row.iloc[0]
    assert r.evidence_frames and all(x.isdigit() for x in r.evidence_frames.split(","))
    assert 0 < r.confidence <= 1
    assert r.python_error and r.fix


def test_every_taxonomy_cause_has_advice_and_all_rules_are_known():
    assert set(advice.PYTHON_ERROR) == set(advice.CAUSES) == set(advice.FIX)
    assert len(advice.CAUSES) == 21
    assert {c for c, _ in RULES} <= set(advice.CAUSES)


def one(cause):
    return pcapsense.analyze(CAUSES_DIR / f"{cause}__crafted.pcap").connections


def test_keepalive_race_reports_idle_gap_and_timing():
    r = one("keepalive-race").iloc[0]
    assert (r.closer, r.close_kind, r.phase) == ("server", "FIN", "awaiting-response")
    assert abs(r.server_keepalive_timeout_s - 5.0) < 0.01
    assert "+0.2 ms after" in r.cause_detail
    assert r.http_requests == 3 and r.http_unanswered == 1


def test_idle_close_vs_keepalive_race():
    assert one("idle-close").iloc[0].cause == "idle-close"
    assert not one("idle-close").iloc[0].abnormal
    assert one("keepalive-race").iloc[0].abnormal


def test_request_rejected_vs_server_timeout_is_the_wait():
    rej, tmo = one("request-rejected").iloc[0], one("server-timeout").iloc[0]
    assert rej.cause == "request-rejected" and tmo.cause == "server-timeout"
    assert "30.00 s" in tmo.cause_detail


def test_server_abort_vs_middlebox_reset():
    mb = one("middlebox-reset").iloc[0]
    assert mb.closer == "middlebox" and "TTL 64" in mb.cause_detail
    sa = one("server-abort").iloc[0]
    assert sa.closer == "server" and sa.cause == "server-abort"


def test_client_timeout_vs_cancel():
    """A close 5 ms after the request is no read timeout: the request was cancelled."""
    r = pcapsense.analyze(CAUSES_DIR / "client-abort__cancelled.pcap").connections.iloc[0]
    assert r.cause == "client-abort" and "cancelled" in r.cause_detail
    assert one("client-timeout").iloc[0].cause == "client-timeout"


def test_client_timeout_vs_network_loss():
    ct = one("client-timeout").iloc[0]
    assert ct.cause == "client-timeout" and ct.closer == "client" and "5.00 s" in ct.cause_detail
    nl = one("network-loss").iloc[0]
    assert nl.cause == "network-loss" and nl.retransmissions >= 5


def test_tls_facts():
    hf = one("tls-handshake-failure").iloc[0]
    assert (hf.tls_alert, hf.tls_alert_by, hf.tls_sni) == ("protocol_version", "server", "api.example")
    cr = one("tls-certificate-rejected").iloc[0]
    assert (cr.tls_alert, cr.tls_alert_by) == ("unknown_ca", "client")


def test_http2_goaway_facts():
    r = one("http2-goaway").iloc[0]
    assert (r.h2_goaway_error, r.h2_goaway_last_stream, r.h2_goaway_by) == ("NO_ERROR", 1, "server")


def test_body_too_large_reports_sent_vs_declared():
    r = one("body-too-large").iloc[0]
    assert r.http_last_request_body_declared == 5_000_000 and r.http_last_request_body_sent == 5200


def test_pool_overflow_only_on_the_discarded_connection():
    df = one("pool-overflow")
    causes = dict(zip(df.client_port, df.cause.astype(str)))
    assert causes == {42000: "graceful", 42001: "graceful", 42010: "pool-overflow", 42011: "pool-overflow",
                      42012: "pool-overflow"}


def test_fail_on_cause_exit_code():
    from typer.testing import CliRunner
    from pcapsense.cli import app
    res = CliRunner().invoke(app, ["analyze", str(CAUSES_DIR / "keepalive-race__crafted.pcap"),
                                   "--fail-on", "keepalive-race", "-q"])
    assert res.exit_code == 1
    res = CliRunner().invoke(app, ["analyze", str(CAUSES_DIR / "idle-close__crafted.pcap"),
                                   "--fail-on", "keepalive-race", "-q"])
    assert res.exit_code == 0


def test_credentials_redacted_in_reports_by_default():
    from typer.testing import CliRunner
    from pcapsense.cli import app
    path = str(CAUSES_DIR / "keepalive-race__crafted.pcap")
    out = CliRunner().invoke(app, ["analyze", path, "-f", "json", "-q"]).stdout
    assert "SECRET123" not in out and "api_key=REDACTED" in out
    out = CliRunner().invoke(app, ["analyze", path, "-f", "json", "-q", "--no-redact"]).stdout
    assert "SECRET123" in out


def test_python_error_depends_on_library_and_method():
    """Field notes: aiohttp retries an idempotent GET silently but raises
    ServerDisconnectedError for a POST: same packets, different Python outcome."""
    from conftest import ROOT
    df = pcapsense.analyze(ROOT / "sample_pcaps" / "captures" / "la-keepalive-race-aiohttp.pcapng").connections
    race = df[df.cause == "keepalive-race"]
    by_method = dict(zip(race.http_last_method, race.python_error))
    assert "ServerDisconnectedError" in by_method["POST"]
    assert "retried" in by_method["GET"]


def test_pool_overflow_needs_the_workers_done():
    """The same client-closed keep-alive connection next to an idle survivor is a pool
    discard when the client's work is over, and a plain close when another connection
    of the client is still busy (steady load: the benchmark's 12 % false positives)."""
    done = pcapsense.analyze(CAUSES_DIR / "pool-overflow__workers-done.pcap").connections
    steady = pcapsense.analyze(CAUSES_DIR / "graceful__steady-load.pcap").connections
    assert list(done.cause.astype(str)) == ["pool-overflow", "idle-close", "pool-overflow"]
    assert "open and idle" in done.cause_detail.iloc[0]
    assert list(steady.cause.astype(str)) == ["graceful", "idle-close", "graceful", "graceful"]


def test_a_fin_while_the_response_flows_is_not_a_pool_discard():
    """The one-request pool-overflow scene, but the client's FIN comes while the response
    is still arriving (shutdown(SHUT_WR) after the request): no pool gave the socket
    back after a complete response."""
    df = pcapsense.analyze(CAUSES_DIR / "graceful__half-close-mid-response.pcap").connections
    assert "pool-overflow" not in set(df.cause.astype(str))
    assert df.cause.iloc[0] == "graceful"
