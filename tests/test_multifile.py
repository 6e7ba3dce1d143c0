"""Rotated captures read as one: the same connections, states, causes and frame numbers
as the single file they were cut from (tcpdump -C / -G / -W ring buffers)."""

import struct

import pandas as pd
import pytest

import pcapsense
from conftest import real


def split_pcap(src, parts, tmp_path):
    """Cut a classic pcap into `parts` files at record boundaries (each with the header)."""
    data = open(src, "rb").read()
    head, pos, recs = data[:24], 24, []
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        recs.append(data[pos:pos + 16 + caplen])
        pos += 16 + caplen
    size = -(-len(recs) // parts)
    paths = []
    for i in range(parts):
        p = tmp_path / f"ring{i}.pcap"
        p.write_bytes(head + b"".join(recs[i * size:(i + 1) * size]))
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("name,parts", [("lo_keepalive.pcap", 3), ("veth_mtu1500.pcap", 4)])
def test_rotated_files_equal_the_whole(name, parts, tmp_path):
    whole = pcapsense.analyze(real(name))
    paths = split_pcap(real(name), parts, tmp_path)
    for given in (list(reversed(paths)), str(tmp_path), str(tmp_path / "ring*.pcap")):
        rot = pcapsense.analyze(given)
        assert rot.capture.frames == whole.capture.frames
        assert len(rot.capture.files) == parts
        pd.testing.assert_frame_equal(rot.connections, whole.connections)
    assert len(rot.packets(0)) == len(whole.packets(0))


def test_a_bad_file_among_rotated_ones_is_reported_not_fatal(tmp_path):
    paths = split_pcap(real("lo_keepalive.pcap"), 2, tmp_path)
    bad = tmp_path / "junk.pcap"
    bad.write_bytes(b"this is not a capture at all, sorry")
    a = pcapsense.analyze(paths + [str(bad)])
    assert a.capture.frames == 26
    assert any("junk.pcap" in w and "not a pcap" in w for w in a.capture.warnings)


def test_progress_counts_all_the_files(tmp_path):
    """progress(bytes) runs on over rotated files: it ends at their total size and never
    goes back (the CLI's progress bar covers the whole set)."""
    import os
    paths = split_pcap(real("veth_mtu1500.pcap"), 3, tmp_path)
    seen = []
    pcapsense.analyze(paths, progress=seen.append, jobs=1)
    assert seen == sorted(seen)
    assert seen[-1] == sum(os.path.getsize(p) for p in paths)
