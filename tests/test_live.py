"""`pcapsense record`, `watch` and the program's exceptions (`--log`).

The record tests really capture: tcpdump on loopback, a real HTTP(S) server
(tests/live_lab.py) and a real client library (requests) run as a program; they need
root (or CAP_NET_RAW) and tcpdump, which tests/run.sh installs."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import pcapsense
from pcapsense import correlate
from pcapsense.correlate.logscan import line_time, scan_text
from pcapsense.live.pcapng import pcap_to_pcapng
from pcapsense.live.watch import StreamSplitter, Watcher

sys.path.insert(0, str(Path(__file__).parent))
import live_lab  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CAN_CAPTURE = os.geteuid() == 0 and (shutil.which("tcpdump") or os.path.exists("/usr/sbin/tcpdump"))
needs_capture = pytest.mark.skipif(not CAN_CAPTURE, reason="capturing needs root and tcpdump (tests/run.sh)")
PCAPSENSE = [sys.executable, "-m", "pcapsense"]


# ------------------------------------------------------------------ the log scanner

REQUESTS_TB = """\
2026-12-07 14:02:03,120 ERROR root round 0 failed
Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/urllib3/connectionpool.py", line 703, in urlopen
    httplib_response = self._make_request(
  File "/usr/lib/python3.11/http/client.py", line 287, in _read_status
    raise RemoteDisconnected("Remote end closed connection without"
http.client.RemoteDisconnected: Remote end closed connection without response

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "client.py", line 9, in <module>
    print(s.get(base + "/b", verify=verify).status_code, flush=True)
requests.exceptions.ConnectionError: ('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))
"""


def test_a_chained_traceback_is_one_exception_timed_by_its_log_record():
    ev = scan_text(REQUESTS_TB, tz=dt.timezone.utc)
    assert len(ev) == 1
    e = ev[0]
    assert e.exception == "requests.exceptions.ConnectionError"
    assert e.chain == ["http.client.RemoteDisconnected", "requests.exceptions.ConnectionError"]
    assert e.kind == "remote-disconnected"
    assert e.ts_ns == int(dt.datetime(2026, 12, 7, 14, 2, 3, 120000, tzinfo=dt.timezone.utc).timestamp() * 1e9)
    assert e.line == 14
    # the source lines of the frames do not name the server ("/b" is no host)
    assert e.host is None


@pytest.mark.parametrize("line,kind,host,port", [
    ("2026-12-07T14:02:04.5Z WARNING urllib3.connectionpool Connection pool is full, discarding connection: "
     "api.example.com. Connection pool size: 2", "pool-full", "api.example.com", None),
    ("WARNING:urllib3.connectionpool:Retrying (Retry(total=2, connect=None, read=None, redirect=None, status=None)) "
     "after connection broken by 'RemoteDisconnected('Remote end closed connection without response')': /api",
     "remote-disconnected", None, None),
    ("aiohttp.client_exceptions.ClientConnectorError: Cannot connect to host 127.0.0.1:9 ssl:default "
     "[Connect call failed ('127.0.0.1', 9)]", "connection-refused", "127.0.0.1", 9),
    ("aiohttp.client_exceptions.ServerDisconnectedError: Server disconnected", "remote-disconnected", None, None),
    ("httpx.ReadTimeout: timed out", "read-timeout", None, None),
    ("httpx.RemoteProtocolError: Server disconnected without sending a response.", "remote-disconnected", None, None),
    ("requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='api.example.com', port=443): Read timed out. "
     "(read timeout=5)", "read-timeout", "api.example.com", 443),
    ("requests.exceptions.SSLError: HTTPSConnectionPool(host='self-signed.example', port=443): Max retries exceeded "
     "with url: / (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
     "verify failed: self-signed certificate (_ssl.c:992)')))", "ssl-certificate", "self-signed.example", 443),
    ("requests.exceptions.ProxyError: HTTPSConnectionPool(host='api.example.com', port=443): Max retries exceeded "
     "with url: / (Caused by ProxyError('Unable to connect to proxy', OSError('Tunnel connection failed: 502 Bad "
     "Gateway')))", "proxy-error", "api.example.com", 443),
    ("ConnectionResetError: [Errno 104] Connection reset by peer", "connection-reset", None, None),
    ("requests.exceptions.ChunkedEncodingError: ('Connection broken: IncompleteRead(10 bytes read, 90 more "
     "expected)', IncompleteRead(10 bytes read, 90 more expected))", "incomplete-response", None, None),
    ("requests.exceptions.HTTPError: 429 Client Error: Too Many Requests for url: https://api.example.com/x",
     "rate-limited", "api.example.com", 443),
])
def test_log_lines_without_a_traceback(line, kind, host, port):
    ev = scan_text(line)
    assert len(ev) == 1, ev
    assert (ev[0].kind, ev[0].host, ev[0].port) == (kind, host, port)


def test_timestamps():
    utc = dt.timezone.utc
    assert line_time("1796652125.25 x", utc) == (1796652125_250000000, "utc")
    assert line_time("2026-12-07T14:02:03.5+02:00 x", utc)[0] == \
        int(dt.datetime(2026, 12, 7, 12, 2, 3, 500000, tzinfo=utc).timestamp() * 1e9)
    ns, kind = line_time("2026-12-07 14:02:03,120 ERROR", dt.timezone(dt.timedelta(hours=1)))
    assert kind == "local" and ns == int(dt.datetime(2026, 12, 7, 13, 2, 3, 120000, tzinfo=utc).timestamp() * 1e9)
    assert line_time("14:02:03.120 ERROR", utc) == ((14 * 3600 + 2 * 60 + 3) * 10**9 + 120_000_000, "clock")
    assert line_time("no time here", utc) == (None, "none")
    assert correlate.parse_tz("+05:30").utcoffset(None) == dt.timedelta(hours=5, minutes=30)
    with pytest.raises(ValueError):
        correlate.parse_tz("Mars/Olympus")


def test_hostile_and_broken_logs_are_read_without_error(tmp_path):
    text = ("Traceback (most recent call last):\n  File \"x\"\n" * 3 + "\x1b[31mConnectionResetError\x07: \x00boom\n"
            + "Traceback (most recent call last):\n" + "  File \"y\"\n" * 5)  # cut short at the end
    ev = scan_text(text)
    assert ev and ev[0].kind == "connection-reset"
    log = tmp_path / "bin.log"
    log.write_bytes(os.urandom(20000) + b"\nConnectionResetError: [Errno 104] Connection reset by peer\n")
    assert any(e.kind == "connection-reset" for e in correlate.read_log(log))
    with pytest.raises(correlate.LogError, match="nope.log: cannot read the log"):
        correlate.read_log(tmp_path / "nope.log")


# ------------------------------------------------------------------ the pcapng writer

def test_pcap_to_pcapng_with_keys_reads_as_the_pcap(tmp_path, tshark):
    src = ROOT / "sample_pcaps" / "captures" / "lc-keepalive-race-https.pcap"
    if not src.exists():
        src = next((ROOT / "sample_pcaps" / "captures").glob("lc-*.pcap"))
    keys = src.with_suffix(".keys")
    dst = tmp_path / "with-keys.pcapng"
    n = pcap_to_pcapng(str(src), str(dst), keys.read_bytes())
    a_src = pcapsense.analyze(src, keylog=keys).connections
    a_dst = pcapsense.analyze(dst).connections                 # (the keys are inside)
    assert n == pcapsense.analyze(src).capture.frames
    cols = ["stream", "cause", "closer", "close_kind", "http_statuses", "tls_decrypted"]
    assert a_dst[cols].equals(a_src[cols])
    out = subprocess.run([tshark, "-r", str(dst), "-Y", "http.request", "-T", "fields", "-e", "http.request.method"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out and set(out) <= {"GET", "POST", "PUT", "HEAD", "DELETE", "PATCH"}


# ------------------------------------------------------------------ record, for real

def _record(tmp_path, *args, env=None, timeout=90):
    return subprocess.run(PCAPSENSE + ["record", "-o", str(tmp_path / "out"), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@needs_capture
def test_record_finds_the_cause_and_matches_the_clients_exceptions(tmp_path):
    srv = live_lab.Server()
    try:
        client = live_lab.client_script(tmp_path)
        r = _record(tmp_path, "-f", f"tcp port {srv.port}", "--",
                    sys.executable, str(client), f"http://127.0.0.1:{srv.port}", "3")
    finally:
        srv.close()
    assert r.returncode == 13, r.stderr[-3000:]          # the client's own exit code (10 + 3 failures)
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"capture.pcapng", "report.html", "stdout.log", "stderr.log"}
    assert "RemoteDisconnected" in (out / "stderr.log").read_text()
    # the verdict and the matches, in the terminal
    assert "request-rejected" in r.stdout
    assert "Your program's errors: 3 exceptions" in r.stdout and "3 explained by a connection" in r.stdout
    # the same again from the files left behind, as JSON
    j = subprocess.run(PCAPSENSE + ["analyze", str(out / "capture.pcapng"), "--log", str(out / "stderr.log"),
                                    "-f", "json", "-q"], capture_output=True, text=True, check=True).stdout
    doc = json.loads(j)
    ex = doc["exceptions"]
    assert [e["match"] for e in ex] == ["explained"] * 3
    assert {e["cause"] for e in ex} == {"request-rejected"}
    assert len({e["stream"] for e in ex}) == 3
    assert all(e["confidence"] >= 0.7 for e in ex)
    by_stream = {c["stream"]: c for c in doc["connections"]}
    for e in ex:
        assert "RemoteDisconnected" in by_stream[e["stream"]]["exceptions"]
    assert 'id="exceptions"' in (out / "report.html").read_text()


@needs_capture
@pytest.mark.parametrize("library,exception", [("httpx", "RemoteProtocolError"),
                                               ("aiohttp", "ServerDisconnectedError")])
def test_record_matches_httpx_and_aiohttp_exceptions(tmp_path, library, exception):
    srv = live_lab.Server()
    try:
        client = live_lab.client_script(tmp_path, library)
        r = _record(tmp_path, "-f", f"tcp port {srv.port}", "--no-html", "--",
                    sys.executable, str(client), f"http://127.0.0.1:{srv.port}", "2")
    finally:
        srv.close()
    assert r.returncode == 12, r.stdout[-2000:] + r.stderr[-3000:]
    assert exception in r.stderr
    assert "2 explained by a connection" in r.stdout, r.stdout
    assert "request-rejected" in r.stdout


@needs_capture
def test_record_over_tls_embeds_the_keys_and_decrypts(tmp_path, tshark):
    crt, key = live_lab.make_cert(tmp_path)
    srv = live_lab.Server(tls=(crt, key))
    try:
        client = live_lab.client_script(tmp_path)
        r = _record(tmp_path, "-f", f"tcp port {srv.port}", "--keep-keys", "--",
                    sys.executable, str(client), f"https://127.0.0.1:{srv.port}", "2", str(crt))
    finally:
        srv.close()
    assert r.returncode == 12, r.stderr[-3000:]
    out = tmp_path / "out"
    keys = out / "keys.txt"
    assert keys.exists() and (keys.stat().st_mode & 0o777) == 0o600
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keys.read_text() or "CLIENT_RANDOM" in keys.read_text()
    # no secret reaches the terminal
    secrets = [ln.split()[2] for ln in keys.read_text().splitlines() if ln and not ln.startswith("#")]
    assert secrets and all(len(x) >= 64 for x in secrets)
    assert not any(x in r.stdout or x in r.stderr for x in secrets)
    a = pcapsense.analyze(out / "capture.pcapng")          # the keys inside the pcapng
    tls = a.connections[a.connections["tls"].fillna(False).astype(bool)]
    assert len(tls) == 2 and (tls["tls_decrypted"] == "yes").all()
    assert set(tls["cause"]) == {"request-rejected"}
    # tshark decrypts the same file with the embedded keys
    methods = subprocess.run([tshark, "-r", str(out / "capture.pcapng"), "-Y", "http.request", "-T", "fields",
                              "-e", "http.request.uri"], capture_output=True, text=True, check=True).stdout.split()
    assert sorted(methods) == ["/a", "/a", "/b", "/b"]
    assert "2 explained by a connection" in r.stdout


@needs_capture
def test_record_without_capture_rights_says_so_before_running_the_command(tmp_path):
    marker = tmp_path / "ran"
    r = subprocess.run(["setpriv", "--bounding-set=-net_raw,-net_admin"] + PCAPSENSE +
                       ["record", "-o", str(tmp_path / "out"), "--", "touch", str(marker)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not allowed (not root and no CAP_NET_RAW)" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def _tcpdumps_writing(outdir: Path) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [ln for ln in ps.splitlines() if "tcpdump" in ln and str(outdir) in ln]


@needs_capture
def test_a_command_killed_by_a_signal_exits_128_plus_n_and_the_capture_stops(tmp_path):
    r = _record(tmp_path, "-f", "tcp port 9", "--no-html", "--", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + signal.SIGTERM
    assert (tmp_path / "out" / "capture.pcapng").exists()
    assert not list((tmp_path / "out").glob(".*"))          # no partial file, no key file
    assert _tcpdumps_writing(tmp_path / "out") == []


@needs_capture
def test_sigterm_to_record_reaches_the_command_and_stops_the_capture(tmp_path):
    p = subprocess.Popen(PCAPSENSE + ["record", "-o", str(tmp_path / "out"), "-f", "tcp port 9", "--no-html", "--",
                                      sys.executable, "-c", "import time; time.sleep(60)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (tmp_path / "out" / "stdout.log").exists() and time.time() - t0 < 30:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert time.time() - t0 < 30
    assert (tmp_path / "out" / "capture.pcapng").exists()
    assert _tcpdumps_writing(tmp_path / "out") == []


def test_record_with_no_command_or_a_missing_one_is_a_one_line_error(tmp_path):
    r = _record(tmp_path, "--", "no-such-command-xyz")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "command not found: no-such-command-xyz" in r.stderr


# ------------------------------------------------------------------ watch

def _records(path: Path) -> tuple[bytes, list[bytes], str]:
    sp = StreamSplitter()
    recs = sp.feed(path.read_bytes())
    return sp.header, recs, sp.kind


@pytest.mark.parametrize("name", ["la-keepalive-race-httpclient.pcap", "lh-pool.pcap.gz"])
def test_watch_windows_report_each_connection_once_as_the_whole_capture_does(name, tmp_path):
    """The capture cut in 7 windows by time: every connection reported once, in the window
    it ended in, with the cause the whole capture gives it."""
    import gzip
    src = ROOT / "sample_pcaps" / "captures" / name
    if not src.exists():
        pytest.skip(f"{name} not in the repo")
    raw = gzip.decompress(src.read_bytes()) if name.endswith(".gz") else src.read_bytes()
    plain = tmp_path / "plain.pcap"
    plain.write_bytes(raw)
    header, recs, kind = _records(plain)
    whole = pcapsense.analyze(plain).connections
    want = whole[whole["abnormal"]].groupby(["cause"]).size().to_dict()
    w = Watcher(tmpdir=str(tmp_path))
    cuts = [len(recs) * k // 7 for k in range(8)]
    got: dict = {}
    finished = 0
    for k in range(7):
        win = w.window(header, recs[cuts[k]:cuts[k + 1]], kind, final=(k == 6))
        finished += win.finished + win.still_open
        for _srv, cause, n, _d, _ in win.abnormal_rows:
            got[cause] = got.get(cause, 0) + n
    assert finished == len(whole)
    # what the packets show is the same; an inference across connections (a full pool: how
    # often its client closed a fresh connection while others sat idle) sees one window
    # and the connections carried into it, so it may name a few less
    from pcapsense.classify import INFERRED_CAUSES
    assert {c: n for c, n in got.items() if c not in INFERRED_CAUSES} == \
        {c: n for c, n in want.items() if c not in INFERRED_CAUSES}
    for c, n in want.items():
        if c in INFERRED_CAUSES:
            assert 0.9 * n <= got.get(c, 0) <= n, (c, got.get(c), n)
    assert w.carry == []


def test_watch_memory_is_bounded_by_the_carry_limits(tmp_path):
    """A connection that never ends carries at most carry_packets packets."""
    src = ROOT / "sample_pcaps" / "captures" / "la-keepalive-race-httpclient.pcap"
    header, recs, kind = _records(src)
    w = Watcher(tmpdir=str(tmp_path), carry_packets=20)
    for k in range(0, len(recs), 5):
        w.window(header, recs[k:k + 5], kind)
        assert len(w.carry) <= 20 * max(1, len(pcapsense.analyze(src).connections))


def test_watch_reads_a_stream_on_stdin_and_fails_on_a_cause(tmp_path):
    src = ROOT / "sample_pcaps" / "captures" / "la-keepalive-race-httpclient.pcap"
    whole = pcapsense.analyze(src).connections
    cause = whole.loc[whole["abnormal"], "cause"].iloc[0]
    with open(src, "rb") as fh:
        r = subprocess.run(PCAPSENSE + ["watch", "-", "--every", "200ms", "--fail-on", cause], stdin=fh,
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert cause in r.stdout and "pcapsense watch:" in r.stdout
    with open(src, "rb") as fh:
        r = subprocess.run(PCAPSENSE + ["watch", "-", "--every", "200ms"], stdin=fh, capture_output=True, text=True,
                           timeout=120)
    assert r.returncode == 0
    summary = [ln for ln in r.stdout.splitlines() if ln.startswith("pcapsense watch:")][-1]
    assert f"{int(whole['abnormal'].sum())} abnormal" in summary, r.stdout


def test_watch_prints_the_summary_on_ctrl_c(tmp_path):
    """Ctrl-C (SIGINT) while the stream is still open: the summary of the run, exit 0."""
    src = ROOT / "sample_pcaps" / "captures" / "la-keepalive-race-httpclient.pcap"
    whole = pcapsense.analyze(src).connections
    p = subprocess.Popen(PCAPSENSE + ["watch", "-", "--every", "300ms"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(src.read_bytes())
    p.stdin.flush()                       # (the stream stays open: a live capture)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    summary = [ln for ln in out.decode().splitlines() if ln.startswith("pcapsense watch:")][-1]
    assert f"{int(whole['abnormal'].sum())} abnormal" in summary
    assert b"Traceback" not in err


def test_watch_on_a_stream_that_is_not_a_capture_is_a_one_line_error(tmp_path):
    r = subprocess.run(PCAPSENSE + ["watch", "-", "--every", "1s"], input=b"GET / HTTP/1.1\r\n" * 10,
                       capture_output=True, timeout=60)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert "offset 0: not a pcap or pcapng stream" in err and "Traceback" not in err
