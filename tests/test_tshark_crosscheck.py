"""Cross-check against tshark on every capture in the repo: same tcp.stream numbers,
same first/last frame and packet count per stream, same first FIN and first RST frame.

tshark is run live (CI installs it); `tests/captures/expected_tshark.json` keeps what it
said when the captures were made, for reading without tshark.
"""

import pytest

import pcapsense
from conftest import PUBLIC, repo_captures
from captures.tshark_truth import tshark_streams

CAPS = repo_captures() + (sorted((PUBLIC / "pcaps").iterdir()) if (PUBLIC / "pcaps").exists() else [])


@pytest.mark.parametrize("path", CAPS, ids=[p.name for p in CAPS])
def test_streams_match_tshark(path, tshark):
    theirs = tshark_streams(str(path))
    ours = pcapsense.analyze(path).connections.set_index("stream")
    assert sorted(ours.index) == sorted(theirs), "tcp.stream indices differ"
    for stream, t in theirs.items():
        row = ours.loc[stream]
        assert row.first_frame == t["first_frame"], stream
        assert row.last_frame == t["last_frame"], stream
        assert row.packets == t["packets"], stream
        fin = None if row.first_fin_frame is pd_NA else int(row.first_fin_frame)
        rst = None if row.first_rst_frame is pd_NA else int(row.first_rst_frame)
        assert fin == t["first_fin_frame"], f"stream {stream}: first FIN"
        assert rst == t["first_rst_frame"], f"stream {stream}: first RST"


import pandas as _pd  # noqa: E402

pd_NA = _pd.NA
