"""Bad and unusual input: one-line errors with file and offset, what came before still
analysed, no traceback, no hang; gzip and stdin."""

import gzip
import subprocess
import sys

import pytest

import pcapsense
from conftest import crafted, real


def test_not_a_capture_names_file_and_offset():
    with pytest.raises(pcapsense.CaptureError) as ei:
        pcapsense.analyze(crafted("not_a_capture.pcap"))
    msg = str(ei.value)
    assert "not_a_capture.pcap" in msg and "byte offset 0" in msg and "\n" not in msg


def test_zero_byte_file():
    with pytest.raises(pcapsense.CaptureError, match="empty file"):
        pcapsense.analyze(crafted("zero_bytes.pcap"))


def test_header_only_pcap_is_empty_not_an_error():
    a = pcapsense.analyze(crafted("empty.pcap"))
    assert a.capture.frames == 0 and len(a.connections) == 0 and a.capture.error is None


def test_corrupt_record_keeps_what_came_before():
    a = pcapsense.analyze(crafted("corrupt_record.pcap"))
    assert a.capture.frames == 2
    assert "corrupt pcap record header" in a.capture.error
    assert "byte offset" in a.capture.error
    with pytest.raises(pcapsense.CaptureError):
        pcapsense.analyze(crafted("corrupt_record.pcap"), strict=True)


def test_missing_file_and_directory():
    with pytest.raises(pcapsense.CaptureError, match="no such file"):
        pcapsense.analyze("/nonexistent/x.pcap")
    with pytest.raises(pcapsense.CaptureError, match="directory"):
        pcapsense.analyze("/")


def test_every_prefix_of_a_capture_is_handled(tmp_path):
    """Cut a real capture at every length: never an exception other than CaptureError,
    and the frames analysed never exceed the full file's."""
    data = open(real("lo_keepalive.pcap"), "rb").read()
    full = pcapsense.analyze(real("lo_keepalive.pcap")).capture.frames
    p = tmp_path / "cut.pcap"
    for n in list(range(0, 200)) + list(range(200, len(data), 97)):
        p.write_bytes(data[:n])
        try:
            a = pcapsense.analyze(p)
        except pcapsense.CaptureError:
            assert n < 24
            continue
        assert a.capture.frames <= full
        if n not in (24, len(data)):
            assert a.capture.truncated or a.capture.frames >= 0


def test_random_garbage_after_header(tmp_path):
    import random
    rnd = random.Random(7)
    head = open(crafted("empty.pcap"), "rb").read()
    for i in range(30):
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 3000)))
        p = tmp_path / f"g{i}.pcap"
        p.write_bytes(head + body)
        a = pcapsense.analyze(p)         # must not raise: error or truncation is reported
        assert a.capture.error or a.capture.truncated or a.capture.frames >= 0


def test_gzip_truncated(tmp_path):
    raw = gzip.compress(open(real("lo_keepalive.pcap"), "rb").read())
    p = tmp_path / "cut.pcap.gz"
    p.write_bytes(raw[: len(raw) // 2])
    a = pcapsense.analyze(p)
    assert a.capture.compressed and a.capture.truncated


def test_stdin_via_cli():
    data = open(real("lo_keepalive.pcap"), "rb").read()
    out = subprocess.run([sys.executable, "-m", "pcapsense.cli", "analyze", "-", "-f", "json", "-q"],
                         input=data, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import json
    doc = json.loads(out.stdout)
    assert doc["capture"]["path"] == "<stdin>" and doc["capture"]["connections"] >= 3


def test_cli_bad_input_is_one_line_exit_2():
    out = subprocess.run([sys.executable, "-m", "pcapsense.cli", "analyze", crafted("not_a_capture.pcap")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("pcapsense: error:")
