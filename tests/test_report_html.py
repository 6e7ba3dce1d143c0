"""The HTML report: self-contained, escaped, redacted, bounded, and checked in a real
headless Chromium (Debian's package, installed by tests/run.sh) with the network off."""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import CAPTURES, ROOT
import pcapsense
from pcapsense.cli import app
from pcapsense.render import html

runner = CliRunner()
SAMPLE = ROOT / "sample_pcaps" / "captures" / "la-keepalive-race-httpclient.pcap"
BENCH_SMALL = Path("/tmp/pcapsense-bench/bench-small.pcap")
CAUSES = sorted((CAPTURES / "causes").glob("*.pcap"))
# anything that would make a browser fetch something: scripts, styles, fonts, images, frames
EXTERNAL = re.compile(r"""(?ix) <script | <link | <iframe | <img | <object | <embed | @import | \bsrc\s*=
                          | url\(\s*['"]?(?!\#) | (?:xlink:)?href\s*=\s*['"](?!\#) """)


def _client_hello(sni: bytes) -> bytes:
    name = struct.pack("!BH", 0, len(sni)) + sni
    ext = struct.pack("!HH", 0, len(name) + 2) + struct.pack("!H", len(name)) + name
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(ext)) + ext)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """Two reset connections whose URL, Host, User-Agent and SNI carry <script> (and an
    API key in the query string)."""
    pytest.importorskip("scapy")
    from tests.captures.make_causes import Conn, wrpcap
    p: list = []
    c = Conn(p, cport=40001, sport=80)
    t = c.handshake(0)
    c.send("c", t + 0.001, b"GET /<script>alert(1)</script>?api_key=SECRET123 HTTP/1.1\r\n"
                           b"Host: <script>alert(2)</script>\r\nUser-Agent: <img src=x onerror=alert(4)>\r\n\r\n")
    c.rst("s", t + 0.01)
    c2 = Conn(p, cport=40002, sport=443)
    t = c2.handshake(1)
    c2.send("c", t + 0.001, _client_hello(b"<script>alert(3)</script>.example"))
    c2.rst("s", t + 0.01)
    path = tmp_path_factory.mktemp("hostile") / "hostile.pcap"
    wrpcap(str(path), p)
    return path


def _self_contained(doc: str) -> None:
    assert doc.startswith("<!DOCTYPE html>")
    hits = EXTERNAL.findall(doc)
    assert not hits, f"external references in the report: {hits[:5]}"


def test_report_of_a_sample_capture():
    a = pcapsense.analyze(SAMPLE)
    doc = html.render(a)
    _self_contained(doc)
    assert "3 of 4 connections ended in keepalive-race" in doc
    assert "1.001 s" in doc                       # the inferred keep-alive timeout: the fix
    assert doc.count('class="card"') == 3         # one card per abnormal disconnect
    assert doc.count('class="ladder"') == 3
    assert "tcp.stream eq 0" in doc and "8, 10, 11" in doc   # filter and evidence frames
    assert "closer <strong>ESTABLISHED</strong>, peer <strong>ESTABLISHED</strong>" in doc
    assert "CLOSE_WAIT / FIN_WAIT_2" in doc        # both sides' states after a packet, in the ladder
    assert doc.count("<svg") >= 3 + 3             # timeline, concurrency, idle gaps + ladders


@pytest.mark.parametrize("path", CAUSES, ids=[p.stem for p in CAUSES])
def test_every_crafted_cause_renders(path):
    a = pcapsense.analyze(path)
    doc = html.render(a, charts=False)
    _self_contained(doc)
    n_abn = int(a.connections["abnormal"].sum())
    assert doc.count('class="card"') == n_abn
    for cause in a.connections.loc[a.connections["abnormal"], "cause"].astype(str).unique():
        assert f'id="verdict-{cause}"' in doc


def test_hostile_capture_renders_inert(hostile):
    a = pcapsense.analyze(hostile)
    c = a.connections
    assert c["http_host"].str.contains("<script>").any() and c["tls_sni"].str.contains("<script>").any()
    doc = html.render(a)
    assert not re.search(r"(?i)<\s*script", doc), "unescaped <script> from the capture"
    assert not re.search(r"(?i)<img", doc)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc   # the URL, escaped
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in doc   # the Host header
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in doc   # the SNI
    assert "SECRET123" not in doc and "api_key=REDACTED" in doc
    _self_contained(doc)
    kept = html.render(a, redact=False)
    assert "SECRET123" in kept and not re.search(r"(?i)<\s*script", kept)


def test_cli_html_and_report(tmp_path, hostile):
    out = tmp_path / "a.html"
    res = runner.invoke(app, ["analyze", str(hostile), "--html", str(out), "-q"])
    assert res.exit_code == 0, res.output
    doc = out.read_text()
    assert "SECRET123" not in doc and "request-rejected" in doc
    out2 = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(hostile), "-o", str(out2), "--no-redact", "-q"])
    assert res.exit_code == 0, res.output
    assert "SECRET123" in out2.read_text()
    res = runner.invoke(app, ["report", str(tmp_path / "missing.pcap"), "-o", str(out2), "-q"])
    assert res.exit_code == 2
    # --fail-on keeps its exit code alongside --html
    res = runner.invoke(app, ["analyze", str(hostile), "--html", str(out), "--fail-on", "abnormal", "-q"])
    assert res.exit_code == 1


@pytest.mark.skipif(not BENCH_SMALL.exists(), reason="benchmark corpus not generated")
def test_large_capture_is_bounded():
    a = pcapsense.analyze(BENCH_SMALL)
    n_abn = int(a.connections["abnormal"].sum())
    assert n_abn > 50
    t = time.perf_counter()
    doc = html.render(a)
    assert time.perf_counter() - t < 30
    assert doc.count('class="card"') == 50
    assert f"50 of {n_abn} abnormal disconnects shown" in doc and f"{n_abn - 50} left out" in doc
    assert f"showing 300 of {len(a.connections)} connections" in doc
    assert len(doc) < 3_000_000
    # cards are spread over causes, not the 50 first of the most frequent one
    causes = set(re.findall(r'<span class="cause">([a-z0-9-]+)</span>', doc))
    assert causes == set(a.connections.loc[a.connections["abnormal"], "cause"].astype(str))


# --- a real browser --------------------------------------------------------------------

def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    if os.environ.get("CI"):
        pytest.fail("chromium is required in CI (tests/run.sh installs Debian's chromium)")
    pytest.skip("chromium not installed")


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4): no
    port, no extra Python package. Collects console messages, exceptions, log errors and
    every network request the page makes."""

    def __init__(self, exe: str, profile: Path):
        r_in, self._w = os.pipe()      # we write commands; chromium reads fd 3
        self._r, w_out = os.pipe()     # chromium writes fd 4; we read

        def fds():  # in the child: our pipe ends become fds 3 and 4
            a, b = fcntl.fcntl(r_in, fcntl.F_DUPFD, 10), fcntl.fcntl(w_out, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions", "--no-first-run",
                "--disable-default-apps", "--mute-audio", "--hide-scrollbars", f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                # the network is off: any fetch would fail (and is reported below)
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                "--host-resolver-rules=MAP * ~NOTFOUND", "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=fds, pass_fds=(3, 4),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r_in)
        os.close(w_out)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _send(self, method, params=None, session=None):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        return self._id

    def _read(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None, timeout=30):
        mid = self._send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, event, timeout=30):
        for e in self.events:
            if e["method"] == event:
                return e
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == event:
                    return msg

    def drain(self, seconds):
        deadline = time.monotonic() + seconds
        try:
            while True:
                msg = self._read(deadline)
                if "method" in msg:
                    self.events.append(msg)
        except TimeoutError:
            pass

    def load(self, url: str, width=1280, height=2400) -> tuple[bytes, list[str], list[str]]:
        """Open url with the network emulated offline; return (PNG, problems, requests)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for m in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
            self.call(m, session=s)
        self.call("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                       "uploadThroughput": -1}, session=s)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=s)
        self.events.clear()
        nav = self.call("Page.navigate", {"url": url}, session=s)
        assert not nav.get("errorText"), nav
        self.wait_for("Page.loadEventFired")
        self.drain(0.5)
        png = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"}, session=s)["data"])
        problems, requests = [], []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.consoleAPICalled":
                problems.append(f"console.{p.get('type')}: {[a.get('value') for a in p.get('args', [])]}")
            elif m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                problems.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                problems.append(f"log {p['entry']['level']}: {p['entry']['text']}")
            elif m == "Network.loadingFailed":
                problems.append(f"loading failed: {p.get('errorText')}")
            elif m == "Network.requestWillBeSent" and p["request"]["url"] != url:
                requests.append(p["request"]["url"])
        return png, problems, requests

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(_chromium(), tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def _non_blank(png: bytes) -> float:
    """Share of pixels that are not (near) white."""
    import matplotlib.image as mpimg
    img = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    return float((img.min(axis=2) < 0.9).mean())


def test_browser_harness_sees_errors(browser, tmp_path):
    """The checks below would notice a broken page: console errors, exceptions, fetches."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><h1>x</h1><script>console.error("boom"); nope();</script>'
                   '<img src="https://example.invalid/x.png"></body></html>')
    _, problems, requests = browser.load(bad.as_uri())
    text = " ".join(problems)
    assert "boom" in text and "nope" in text
    assert requests == ["https://example.invalid/x.png"]


@pytest.mark.parametrize("which", ["sample", "hostile"])
def test_report_in_headless_chromium(browser, tmp_path, hostile, which):
    a = pcapsense.analyze(SAMPLE if which == "sample" else hostile)
    out = tmp_path / f"{which}.html"
    html.write(a, out)
    png, problems, requests = browser.load(out.as_uri())
    shot = tmp_path / f"{which}.png"
    shot.write_bytes(png)
    assert not problems, problems
    assert not requests, f"the report fetched {requests}"
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert _non_blank(png) > 0.02, f"screenshot looks blank: {shot}"


def test_redacted_text_columns_equal_redact_text_of_every_value():
    """The HTML report redacts Arrow text columns by looking only at the values that
    can hold a secret (one of ?&;@): the same values as redact_text of every one."""
    import pandas as pd
    from pcapsense.render.redact import redact_column as _redacted
    from pcapsense.render.redact import redact_text
    values = ["GET /a?api_key=SECRET&x=1 answered", "clean detail", None, "https://user:pw@host/x",
              "a;token=abc", "plain @ sign", "", "q?nothing=1"] * 3
    for dtype in ("str", object):
        s = pd.Series(values, dtype=dtype)
        got = _redacted(s)
        assert [v if isinstance(v, str) else None for v in got] == [redact_text(v) for v in values]
    clean = pd.Series(["a", "b", None], dtype="str")
    assert _redacted(clean) is clean
