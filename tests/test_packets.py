"""Analysis.packets(stream) / packets_of(streams): a connection's packets read again,
tracking only its 4-tuple. Every packet's flags, states and direction must be those of
a full pass that tracks every connection (the reference below), for every connection of
every repo capture; with split="zeek" the packets are the Zeek record's."""

import numpy as np
import pandas as pd
import pytest

import pcapsense
from conftest import repo_captures
from pcapsense.analysis import packets_frame
from pcapsense.capture import layout, reader


def reference_packets(path) -> dict[int, pd.DataFrame]:
    """Every packet of the capture from an engine tracking every connection, by stream."""
    rows: list[np.ndarray] = []
    eng = reader.new_engine(emit_packets=True)
    reader.run(str(path), eng, on_rows=rows.append)
    arr = np.concatenate(rows) if rows else np.empty(0, dtype=layout.PACKET_DTYPE)
    return {int(s): g.reset_index(drop=True) for s, g in packets_frame(arr).groupby("stream", sort=True)}


@pytest.mark.parametrize("path", repo_captures(), ids=lambda p: p.name)
def test_packets_of_every_connection_equal_a_full_pass(path):
    a = pcapsense.analyze(str(path), jobs=1, tables="connections")
    want = reference_packets(path)
    streams = a.connections["stream"].tolist()
    got = a.packets_of(streams)
    assert sorted(got) == sorted(s for s in streams if s in want)
    for s in streams:
        pd.testing.assert_frame_equal(got[s], want[s])
    if streams:
        pd.testing.assert_frame_equal(a.packets(streams[-1]), want[streams[-1]])
    assert len(a.packets(10 ** 6)) == 0          # no such connection: no packets


def test_packets_of_zeek_records():
    """With split="zeek" a 4-tuple may hold several records (Zeek's timers split what
    Wireshark keeps as one stream): packets(record) gives that record's packets."""
    checked = 0
    for path in repo_captures():
        z = pcapsense.analyze(str(path), jobs=1, split="zeek", tables="connections")
        w = pcapsense.analyze(str(path), jobs=1, tables="connections")
        if len(z.connections) == len(w.connections):
            continue
        got = z.packets_of(z.connections["stream"].tolist())
        for r in z.connections.itertuples(index=False):
            pk = got[r.stream]
            assert len(pk) == r.packets
            assert pk["frame"].min() == r.first_frame and pk["frame"].max() == r.last_frame
            assert (pk["stream"] == r.stream).all()
        checked += 1
    assert checked >= 1
