"""Analysing part of a capture: `max_packets` (the first N frames, `tshark -c`) and a
time window `since`/`until`. Each must give exactly the analysis of the capture cut by
editcap (`-r 1-N`, `-A -B`): the same connections, stream and frame numbers, states,
transitions, HTTP exchanges and causes, in one process and in shards, from one file
and from rotated files."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import pcapsense
from conftest import ROOT, real
from pcapsense.analysis import parse_time, time_window
from test_multifile import split_pcap

LAB = ROOT / "sample_pcaps" / "captures"
# lab captures with several connections, pcap, pcapng and gzip
CAPTURES = [LAB / n for n in (
    "la-body-too-large-asyncio.pcap.gz", "la-idle-close.pcap", "la-keepalive-race-aiohttp.pcapng",
    "la-rate-limited-aiohttp.pcap", "la-rate-limited-nginx.pcapng", "la-request-rejected-nginx444.pcap.gz",
    "lb-http2-goaway-maxreq.pcapng", "lb-pool-overflow-requests.pcap", "lb-proxy-disconnect-tinyproxy.pcap")]


def frame_times(path) -> list[str]:
    """Every frame's time as tshark prints it (epoch seconds, to the nanosecond)."""
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def editcap(args, src, dst):
    subprocess.run(["editcap", *args, str(src), str(dst)], capture_output=True, check=True)
    return str(dst)


def assert_same_analysis(got, want):
    for f in ("frames", "tcp_packets", "connections", "first_time", "last_time"):
        assert getattr(got.capture, f) == getattr(want.capture, f), f
    pd.testing.assert_frame_equal(got.connections, want.connections)
    pd.testing.assert_frame_equal(got.transitions, want.transitions)
    pd.testing.assert_frame_equal(got.http, want.http)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_max_packets_equals_the_capture_cut_by_editcap(path, tmp_path):
    total = pcapsense.analyze(str(path), jobs=1).capture.frames
    for n in (1, total // 3, (2 * total) // 3):
        cut = pcapsense.analyze(_first_frames(path, n, tmp_path), jobs=1)
        for jobs in (1, 2):
            got = pcapsense.analyze(str(path), jobs=jobs, max_packets=n)
            assert_same_analysis(got, cut)
            assert any(f"stopped after {n} frames" in w for w in got.capture.warnings)


def _first_frames(path, n, tmp_path) -> str:
    dst = tmp_path / f"first{n}.pcapng"
    subprocess.run(["editcap", "-r", str(path), str(dst), f"1-{n}"], capture_output=True, check=True)
    return str(dst)


def test_max_packets_at_or_past_the_end_changes_nothing():
    path = str(CAPTURES[3])
    whole = pcapsense.analyze(path, jobs=1)
    for n in (whole.capture.frames, whole.capture.frames + 1, 10 ** 9):
        got = pcapsense.analyze(path, jobs=1, max_packets=n)
        assert_same_analysis(got, whole)
        assert not any("stopped after" in w for w in got.capture.warnings)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_time_window_equals_the_capture_cut_by_editcap(path, tmp_path):
    """Windows that cut connections at both ends, open on one side, and boundaries on a
    frame's exact time (since is inclusive, until exclusive, as editcap -A/-B)."""
    times = frame_times(path)
    k = len(times)
    for since, until in ((times[k // 4], times[(3 * k) // 4]), (times[k // 2], None), (None, times[k // 3]),
                         (times[1], times[-1])):
        args = (["-A", since] if since else []) + (["-B", until] if until else [])
        cut = pcapsense.analyze(editcap(args, path, tmp_path / "window.pcapng"), jobs=1)
        for jobs in (1, 2):
            got = pcapsense.analyze(str(path), jobs=jobs, since=since, until=until)
            assert_same_analysis(got, cut)
        skipped = pcapsense.analyze(str(path), jobs=1).capture.frames - cut.capture.frames
        assert got.capture.counters["frames_outside_window"] == skipped
        assert any(f"{skipped} frames outside it were skipped" in w for w in got.capture.warnings)


def test_window_and_limit_over_rotated_files_equal_the_whole_file(tmp_path):
    """Rotated files read as one: the window and the frame limit apply to the whole
    capture; files after the limit are not opened."""
    path = real("veth_mtu1500.pcap")
    split_pcap(path, 4, tmp_path)
    times = frame_times(path)
    since, until = times[len(times) // 5], times[(4 * len(times)) // 5]
    for jobs in (1, 2):
        assert_same_analysis(pcapsense.analyze(str(tmp_path), jobs=jobs, since=since, until=until),
                             pcapsense.analyze(path, jobs=1, since=since, until=until))
    n = len(times) // 3
    rotated = pcapsense.analyze(str(tmp_path), jobs=1, max_packets=n)
    assert_same_analysis(rotated, pcapsense.analyze(path, jobs=1, max_packets=n))
    assert len(rotated.capture.files) < 4
    assert any("later file" in w and "not opened" in w for w in rotated.capture.warnings)


def test_packets_of_a_connection_follow_the_window():
    path = str(CAPTURES[7])
    times = frame_times(path)
    a = pcapsense.analyze(path, since=times[len(times) // 3], until=times[-5])
    for row in a.connections.itertuples():
        pk = a.packets(row.stream)
        assert len(pk) == row.packets
        assert pk["frame"].min() == row.first_frame and pk["frame"].max() == row.last_frame


def test_parse_time_forms():
    ns = 1796047320_000000000                     # 2026-11-30T14:02:00Z
    for v in ("2026-11-30T14:02:00Z", "2026-11-30 14:02:00", "2026-11-30T15:02:00+01:00", "1796047320",
              1796047320, 1796047320.0, np.int64(1796047320), np.float64(1796047320),
              pd.Timestamp("2026-11-30 14:02", tz="UTC"),
              pd.Timestamp("2026-11-30 14:02").to_pydatetime()):
        assert parse_time(v) == ns, v
    assert parse_time("1796047320.000000001") == ns + 1            # exact to the nanosecond
    for bad in ("yesterday", "", "nan", "1e40", True, float("inf")):
        with pytest.raises(ValueError):
            parse_time(bad, "since")
    with pytest.raises(ValueError, match="empty time window"):
        time_window("2026-11-30T14:02:00Z", "2026-11-30T14:02:00Z")
    with pytest.raises(ValueError, match="max_packets"):
        pcapsense.analyze(str(CAPTURES[0]), max_packets=0)


def test_cli_selection(tmp_path):
    path = str(CAPTURES[3])
    times = frame_times(path)
    run = lambda *a: subprocess.run([sys.executable, "-m", "pcapsense", *a], capture_output=True,  # noqa: E731
                                    text=True, cwd=tmp_path)
    r = run("analyze", path, "-f", "json", "-c", "20", "--since", times[3], "--until", times[90])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    want = pcapsense.analyze(path, max_packets=20, since=times[3], until=times[90])
    assert doc["capture"]["frames"] == 20 == want.capture.frames
    assert [c["stream"] for c in doc["connections"]] == want.connections["stream"].tolist()
    assert [c["cause"] for c in doc["connections"]] == want.connections["cause"].astype(str).tolist()
    assert "stopped after 20 frames" in r.stderr and "frames outside it were skipped" in r.stderr
    for args, msg in ((("--since", "yesterday"), "since: not a time: 'yesterday'"),
                      (("--since", times[5], "--until", times[5]), "empty time window"),
                      (("-c", "0"), "")):
        r = run("analyze", path, *args)
        assert r.returncode == 2 and msg in r.stderr
        assert "Traceback" not in r.stderr
    r = run("analyze", path, "--since", "yesterday")
    assert r.stderr.count("\n") == 1


def test_rotated_files_outside_the_window_are_not_opened(tmp_path):
    """A ring buffer and an incident window: only the files that can hold frames in the
    window are read (by their first timestamps), and the result is still the whole
    capture's cut by the window."""
    path = real("veth_mtu1500.pcap")
    parts = split_pcap(path, 8, tmp_path)
    firsts = [frame_times(p)[0] for p in parts]
    # from inside the 4th file to the start of the 6th: files 3, 4 (0-based) only
    since = frame_times(parts[3])[5]
    until = firsts[5]
    got = pcapsense.analyze(str(tmp_path), jobs=1, since=since, until=until)
    assert got.capture.files == parts[3:5]
    assert any("6 of the 8 files lie outside the time window" in w for w in got.capture.warnings)
    assert_same_analysis(got, pcapsense.analyze(path, jobs=1, since=since, until=until))
    # a boundary equal to the next file's first time keeps the file before it
    got = pcapsense.analyze(str(tmp_path), jobs=1, since=firsts[4], until=firsts[5])
    assert got.capture.files == parts[3:5]
    assert_same_analysis(got, pcapsense.analyze(path, jobs=1, since=firsts[4], until=firsts[5]))
    # a window before the capture: one file read, nothing in it
    early = pcapsense.analyze(str(tmp_path), jobs=1, until="2000-01-01T00:00:00Z")
    assert len(early.capture.files) == 1 and len(early.connections) == 0 and early.capture.frames == 0


def test_files_in_window_keeps_files_it_cannot_date():
    from pcapsense.analysis import files_in_window
    firsts = {"a": 10, "b": None, "c": 30, "d": 40}
    # (analyze sorts the files it cannot date last)
    assert files_in_window(["a", "c", "d", "b"], firsts, (35, 38)) == ["c", "b"]
    # a file followed by one it cannot date is kept too: its end is unknown
    assert files_in_window(["a", "b", "c", "d"], firsts, (35, 38)) == ["a", "b", "c"]
    assert files_in_window(["a", "c", "d"], firsts, (0, 5)) == ["a"]
    assert files_in_window(["a", "c", "d"], firsts, (100, 200)) == ["d"]
