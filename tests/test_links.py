"""Link layers and encapsulations (issue "Readers"): every capture of
tests/captures/make_links.py holds one HTTP exchange (8 packets, one connection, closed by
FIN) in a different wrapping; pcapsense must find it, name the link type, and say what it
could not read. tests/test_tshark_crosscheck.py compares the files under crafted/links
with tshark; the ones tshark 4.0 refuses are here alone."""

import subprocess
import sys
from pathlib import Path

import pytest

import pcapsense

HERE = Path(__file__).parent / "captures"
LINKS = sorted((HERE / "crafted" / "links").glob("*.pcap"))
BEYOND = sorted((HERE / "links_beyond_tshark").glob("*.pcap"))
NAMES = {"ppp": "PPP", "ppp_pfc": "PPP", "ppp_mpls": "PPP", "ppp_hdlc": "PPP_HDLC", "ppp_pppd": "PPP_PPPD",
         "ppp_with_dir": "PPP_WITH_DIR", "chdlc": "C_HDLC", "chdlc_with_dir": "C_HDLC_WITH_DIR", "ipoib": "IPOIB",
         "ieee80211": "IEEE802_11", "ieee80211_qos": "IEEE802_11", "radiotap": "IEEE802_11_RADIOTAP",
         "ppi_80211": "PPI", "arcnet_bsd": "ARCNET_BSD", "arcnet_linux": "ARCNET_LINUX",
         "arcnet_linux_rfc1051": "ARCNET_LINUX", "juniper_ether": "JUNIPER_ETHER"}


@pytest.mark.parametrize("path", [p for p in LINKS + BEYOND if p.stem not in ("esp", "ip_source_route")
                                  and not p.stem.startswith("frag_")],
                         ids=lambda p: p.stem)
def test_each_wrapping_decodes_to_the_one_connection(path):
    a = pcapsense.analyze(path)
    c = a.connections
    assert len(c) == 1 and a.capture.tcp_packets == 8, a.capture.warnings
    r = c.iloc[0]
    assert (r.first_frame, r.packets, r.close_kind, r.closer, r.http_statuses) == (1, 8, "FIN", "client", "200")
    assert a.capture.link_types == [NAMES.get(path.stem, "EN10MB")]
    assert not any("skipped" in w or "could not be decoded" in w for w in a.capture.warnings)


def test_what_libpcap_refuses_is_read_and_said():
    warn = {p.stem: pcapsense.analyze(p).capture.warnings for p in LINKS + BEYOND}
    assert any("pcap version is not 2.4" in w for w in warn["pcap_version_2_3"])
    assert any("reserved bits are set" in w for w in warn["linktype_reserved_bits"])
    assert any("ends with an FCS" in w for w in warn["ether_fcs"])
    assert not warn["ppp"]


def test_esp_is_said_not_silently_lost():
    a = pcapsense.analyze(HERE / "crafted" / "links" / "esp.pcap")
    assert len(a.connections) == 1 and a.connections.iloc[0].first_frame == 9     # (the clear one after)
    assert a.capture.counters["opaque_ipsec_packets"] == 8
    assert any("IPsec ESP or IPComp" in w for w in a.capture.warnings)


def test_a_source_routed_connection_is_keyed_by_its_final_destination():
    a = pcapsense.analyze(HERE / "crafted" / "links" / "ip_source_route.pcap")
    c = a.connections
    assert list(c.server_ip) == ["10.9.9.9", "10.9.9.9"] and list(c.packets) == [8, 8]
    assert a.capture.counters["bad_checksums"] == 0          # (the pseudo-header's destination is the final one)


def test_an_unsupported_link_type_is_named_with_its_frame_count(tmp_path):
    import struct
    p = tmp_path / "ax25.pcap"
    with open(p, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 3))
        for i in range(3):
            fh.write(struct.pack("<IIII", 1_700_000_000, i, 10, 10) + b"\x01" * 10)
    w = pcapsense.analyze(p).capture.warnings
    assert "3 frames of link type AX25 (3), which pcapsense does not read, were skipped" in w


def test_quiet_still_prints_the_one_line_error(tmp_path):
    src = HERE / "crafted" / "corrupt_record.pcap"
    r = subprocess.run([sys.executable, "-m", "pcapsense", "analyze", str(src), "-q", "-f", "json"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("pcapsense: error:") and "offset" in lines[0], r.stderr


@pytest.mark.parametrize("name,reassembled,first_frame,last_frame", [
    ("frag_ipv4", 3, 3, 16), ("frag_vlan", 2, 3, 13), ("frag_ppp", 2, 3, 13), ("frag_ipv6", 2, 3, 13)])
def test_fragments_are_reassembled_at_the_frame_that_completes_them(name, reassembled, first_frame, last_frame):
    """The SYN whose TCP header is split in three starts the stream at its last fragment's
    frame, as in tshark (tests/test_tshark_crosscheck.py checks every frame); the request
    sent last fragment first and the response whose fragments overlap (the first bytes
    win) are read."""
    a = pcapsense.analyze(HERE / "crafted" / "links" / f"{name}.pcap")
    r = a.connections.iloc[0]
    assert (len(a.connections), r.first_frame, r.last_frame, r.packets) == (1, first_frame, last_frame, 8)
    assert (r.http_requests, r.http_statuses) == (1, "200")
    assert a.capture.counters["ip_datagrams_reassembled"] == reassembled
    assert a.capture.counters["ip_datagrams_incomplete"] == 0 and not a.capture.warnings


def test_a_datagram_that_never_completes_is_said():
    a = pcapsense.analyze(HERE / "crafted" / "links" / "frag_missing.pcap")
    assert a.connections.iloc[0].packets == 7
    assert a.capture.counters["ip_datagrams_incomplete"] == 1
    assert any("1 fragmented IP datagrams never completed" in w for w in a.capture.warnings)
