"""The fast path (compiled engine + vectorised tables) against the reference
implementation (tests/reference_impl.py: per packet, scapy-decoded, obviously correct),
field by field, for every capture in the repo (tunnels, odd link types and gzip
included), and for the public corpus in ../shared except five encapsulations scapy
cannot decode."""

import pandas as pd
import pytest

import pcapsense
from conftest import PUBLIC, repo_captures
from reference_impl import summary

# the link layers and encapsulations of tests/captures/make_links.py that scapy does not
# decode the way tshark does (tests/test_tshark_crosscheck.py holds them to tshark instead)
LINKS_SCAPY_CANNOT = {
    "ah_ipip.pcap", "arcnet_bsd.pcap", "arcnet_linux.pcap", "arcnet_linux_rfc1051.pcap", "chdlc.pcap",
    "etag.pcap", "ether_fcs.pcap", "gre_wccp.pcap", "ip_source_route.pcap", "ipoib.pcap", "juniper_ether.pcap",
    "ppp_mpls.pcap",
    # scapy does not reassemble IP fragments
    "frag_ipv4.pcap", "frag_ipv6.pcap", "frag_ppp.pcap", "frag_vlan.pcap", "frag_first_cut.pcap",
    "frag_missing.pcap"}
CAPS = [p for p in repo_captures() if not (p.parent.name == "links" and p.name in LINKS_SCAPY_CANNOT)]
# ../shared's public corpus too, when present, but for the encapsulations scapy does not
# decode (the reference then sees no TCP, or not all of it)
SCAPY_CANNOT = {
    "zeek__cisco-fabric-path.pcap": "FabricPath frames are not decoded by scapy",
    "zeek__http__connect-with-header.pcap": "BSD loopback with AF_INET6 = 30 is not mapped to IPv6 by scapy",
    "zeek__tunnels__Teredo.pcap": "Teredo is found by content (as Zeek and Wireshark do), scapy binds it to no port",
    "zeek__tunnels__ayiya3.pcap": "AYIYA is not a scapy layer",
    "zeek__tunnels__gtp__gtp2_different_udp_port.pcap": "GTP-U on a non-standard UDP port is not decoded by scapy",
}
PUBLIC_CAPS = sorted(p for p in (PUBLIC / "pcaps").glob("*") if p.suffix in (".pcap", ".pcapng", ".cap", ".gz")
                     and p.name not in SCAPY_CANNOT) if (PUBLIC / "pcaps").is_dir() else []


@pytest.mark.parametrize("path", CAPS + PUBLIC_CAPS, ids=[p.name for p in CAPS + PUBLIC_CAPS])
def test_fast_path_agrees_with_reference(path):
    ref = summary(path)
    a = pcapsense.analyze(path, layers="tcp")
    df = a.connections.set_index("stream")
    assert sorted(ref) == sorted(df.index)
    for stream, want in ref.items():
        row = df.loc[stream]
        for field, value in want.items():
            got = row["closer"] if field == "tcp_closer" else row[field]
            if field == "tcp_closer" and got == "middlebox":
                got = row["first_rst_by"]          # the classifier re-attributes injected RSTs
            if got is pd.NA or got is None or (isinstance(got, float) and got != got):
                got = None
            elif hasattr(got, "item"):
                got = got.item()
            assert (str(got) if isinstance(value, str) else got) == value, f"stream {stream} {field}"
