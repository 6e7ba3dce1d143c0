"""Analysis.http: one row per HTTP/1 request and its response (Zeek http.log style)."""

import pcapsense
from conftest import ROOT

RACE = ROOT / "sample_pcaps" / "captures" / "la-keepalive-race-httpclient.pcap"


def test_exchanges_pair_requests_with_responses():
    a = pcapsense.analyze(RACE)
    h = a.http
    assert len(h) == 9 and list(h.columns[:3]) == ["stream", "depth", "method"]
    lost = h[h.status.isna()]
    # the three requests that crossed the server's FIN got no response
    assert sorted(lost.stream) == [0, 1, 2] and (lost.depth == 2).all()
    assert (h.request_time.dt.tz is not None) and str(h.status.dtype) == "Int64"
    assert (h.dropna(subset=["response_time"]).eval("response_time >= request_time")).all()
    assert set(h.host.dropna()) == {"127.0.0.1:18080"}
    # agrees with the per-connection columns
    c = a.connections.set_index("stream")
    assert (h.groupby("stream").size() == c.loc[h.stream.unique(), "http_requests"]).all()


def test_tcp_only_has_no_application_rows():
    a = pcapsense.analyze(RACE, layers="tcp")
    assert len(a.http) == 0 and a.connections.http_requests.isna().all()
    assert set(a.connections.closer.astype(str)) == {"server", "client"}


def test_pipelined_requests_and_coalesced_responses(tmp_path):
    """Two requests in one segment, both responses in one segment."""
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "captures"))
    from make_causes import Conn
    from scapy.all import wrpcap
    pk = []
    c = Conn(pk)
    t = c.handshake(0)
    c.send("c", t + 0.001, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    c.send("s", t + 0.002, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\n"
                           b"Content-Length: 0\r\n\r\n")
    c.fin("c", t + 0.003)
    c.fin("s", t + 0.0035)
    path = tmp_path / "pipelined.pcap"
    wrpcap(str(path), sorted(pk, key=lambda p: p.time))
    a = pcapsense.analyze(path)
    assert list(a.http.target) == ["/a", "/b"] and list(a.http.status) == [200, 404]
    r = a.connections.iloc[0]
    assert r.http_requests == 2 and r.http_unanswered == 0 and r.cause == "graceful"
