"""Crafted edge cases (tests/captures/crafted, made by make_crafted.py): what each
connection's ending must look like, field by field."""

import pandas as pd
import pytest

import pcapsense
from conftest import crafted, real


def one(name, **kw):
    df = pcapsense.analyze(crafted(name), **kw).connections
    assert len(df) == 1, df
    return df.iloc[0]


NORMAL = ["vlan_8021q.pcap", "vlan_qinq.pcap", "sll2.pcap", "sll.pcap", "null_loopback.pcap",
          "raw_ip.pcap", "raw_ip_linktype12.pcap", "nanosecond.pcap", "big_endian.pcap",
          "gzip.pcap.gz", "vxlan.pcap", "gre.pcap", "mpls.pcap", "pppoe.pcap", "ipv6.pcap"]


@pytest.mark.parametrize("name", NORMAL)
def test_normal_close_over_every_link_and_tunnel(name):
    r = one(name)
    assert (r.closer, r.close_kind, r.close_frame) == ("client", "FIN", 8)
    assert (r.closer_state, r.peer_state) == ("ESTABLISHED", "ESTABLISHED")
    assert (r.client_state, r.server_state) == ("TIME_WAIT", "CLOSED")
    assert r.conn_state == "SF" and r.history == "ShADadFf"
    assert r.client_port == 40000 and r.server_port == 80 and not r.client_inferred
    assert r.rtt_ms > 0


def test_tunnels_report_inner_addresses():
    for name in ("vxlan.pcap", "gre.pcap"):
        r = one(name)
        assert (r.client_ip, r.server_ip) == ("10.0.0.1", "10.0.0.2")
        assert r.tunnelled
    assert one("ipv6.pcap").client_ip == "fd00::1"


def test_handshake_missing_infers_client_from_request():
    r = one("handshake_missing.pcap")
    assert r.client_inferred and r.client_rule == "payload"
    assert (r.client_port, r.server_port) == (40000, 80)
    assert (r.closer, r.close_kind, r.close_frame) == ("server", "FIN", 5)
    assert r.closer_state == "ESTABLISHED"  # inferred: first seen mid-stream
    assert r.conn_state == "SF"


def test_fin_retransmitted_counts_once():
    r = one("fin_retransmitted.pcap")
    assert (r.closer, r.close_kind, r.close_frame) == ("client", "FIN", 8)
    assert r.history.count("F") == 1
    assert r.client_state == "TIME_WAIT"


def test_fin_and_rst_in_one_segment():
    r = one("fin_and_rst.pcap")
    assert r.fin_rst_same_packet
    assert r.close_kind == "RST" and r.closer == "client" and r.close_frame == 8
    assert "I" in r.history


def test_rst_after_fin_from_same_side():
    r = one("rst_after_fin.pcap")
    assert (r.closer, r.close_kind, r.close_frame) == ("client", "FIN", 8)
    assert r.first_rst_frame == 10 and r.first_rst_by == "client"
    assert not r.rst_after_close           # the server never sent its FIN
    assert (r.client_state, r.server_state) == ("CLOSED", "CLOSED")
    a = pcapsense.analyze(crafted("rst_after_fin.pcap"))
    t = a.transitions
    client_steps = list(t[t.endpoint == "client"].new_state.astype(str))
    assert client_steps == ["SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSED"]


def test_simultaneous_open():
    a = pcapsense.analyze(crafted("simultaneous_open.pcap"))
    assert len(a.connections) == 1
    r = a.connections.iloc[0]
    assert r.closer == "client" and r.close_frame == 8 and r.client_ip == "10.0.0.1"
    assert r.anomalies == 0


def test_simultaneous_close():
    r = one("simultaneous_close.pcap")
    assert r.simultaneous_close
    assert (r.closer, r.close_frame) == ("client", 8)
    assert (r.client_state, r.server_state) == ("TIME_WAIT", "TIME_WAIT")


def test_port_reuse_follows_wireshark():
    df = pcapsense.analyze(crafted("port_reuse.pcap")).connections
    # #1 closed by FIN; #2 (new ISN: new stream) reset by the client; #3 reuses #2's ISN,
    # which Wireshark 4.0 takes for a retransmitted SYN: same stream as #2.
    assert list(df.stream) == [0, 1]
    assert list(df.port_reused) == [False, True]
    assert (df.iloc[0].closer, df.iloc[0].close_kind, df.iloc[0].close_frame) == ("client", "FIN", 8)
    assert (df.iloc[1].close_kind, df.iloc[1].close_frame) == ("RST", 19)


def test_out_of_order_retransmission_zero_window_keepalive():
    r = one("out_of_order.pcap")
    assert r.out_of_order >= 1
    assert r.retransmissions >= 1
    assert r.zero_windows >= 1
    assert r.keepalives >= 1
    assert r.dup_acks >= 1
    assert r.conn_state == "SF"
    pk = pcapsense.analyze(crafted("out_of_order.pcap")).packets(0)
    assert len(pk) == 23 and pk.frame.tolist() == list(range(1, 24))
    assert pk.loc[pk.frame == 8, "out_of_order"].item()
    assert pk.loc[pk.frame == 12, "zero_window"].item()


def test_pcapng_two_interfaces_nanoseconds():
    a = pcapsense.analyze(crafted("pcapng_two_interfaces.pcapng"))
    assert a.capture.format == "pcapng" and set(a.capture.link_types) == {"EN10MB", "RAW"}
    assert len(a.connections) == 1
    pk = a.packets(0)
    assert len(pk) == 11
    assert (pk.time.diff().dropna() >= pd.Timedelta(0)).all()
    assert any(t.nanosecond for t in pk.time[5:])          # if_tsresol = 9 kept


def test_nanosecond_pcap_keeps_nanoseconds():
    a = pcapsense.analyze(crafted("nanosecond.pcap"))
    assert a.capture.format == "pcap-nanosecond"
    pk = a.packets(0)
    assert (pk.time.iloc[1] - pk.time.iloc[0]) == pd.Timedelta(nanoseconds=150007)


def test_snaplen96_counts_cut_packets_and_keeps_bytes():
    r = one("snaplen96.pcap")
    assert r.snaplen_cut_packets >= 3
    assert r.server_bytes >= 1448 + 662            # from the IP header, not the capture
    assert (r.closer, r.close_kind, r.close_frame) == ("server", "FIN", 9)


def test_refused():
    r = one("refused.pcap")
    assert (r.closer, r.close_kind, r.close_frame) == ("server", "RST", 2)
    assert r.conn_state == "REJ" and r.phase == "tcp-handshake"
    assert (r.closer_state, r.peer_state) == ("LISTEN", "SYN_SENT")
    assert r.abnormal


def test_syn_retries():
    r = one("syn_retries.pcap")
    assert r.conn_state == "S0" and r.close_kind == "none" and r.closer == "none"
    assert r.syn_retransmits == 3 and r.client_state == "SYN_SENT"
    assert r.history == "S"


def test_injected_rst_keeps_its_fingerprint():
    r = one("rst_injected.pcap")
    assert r.close_kind == "RST" and r.first_rst_frame == 7
    assert r.rst_ttl == 250 and r.rst_prev_ttl == 64 and r.rst_ipid == 0
    assert r.server_ttl_changes >= 1


def test_truncated_file_is_a_warning_not_an_error():
    a = pcapsense.analyze(crafted("truncated.pcap"))
    assert a.capture.truncated and a.capture.error is None
    assert a.capture.frames == 10
    assert any("truncated" in w for w in a.capture.warnings)
    r = a.connections.iloc[0]
    assert (r.closer, r.close_frame) == ("client", 8)


def test_real_captures_keep_working():
    a = pcapsense.analyze(real("any_sll2.pcap"))
    assert a.capture.link_types == ["LINUX_SLL2"] and len(a.connections) >= 1
    k = pcapsense.analyze(real("killed_mid_write.pcap"))
    assert k.capture.truncated and k.capture.frames > 0
    g = pcapsense.analyze(real("lo_keepalive.pcap.gz"))
    p = pcapsense.analyze(real("lo_keepalive.pcap"))
    assert g.capture.compressed
    pd.testing.assert_frame_equal(g.connections, p.connections)
