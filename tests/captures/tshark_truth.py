#!/usr/bin/env python3
"""Ground truth per TCP stream, according to tshark.

Importable:

    from tests.captures.tshark_truth import tshark_streams
    streams = tshark_streams("tests/captures/crafted/refused.pcap")
    # {0: {"first_frame": 1, "last_frame": 2, "packets": 2,
    #      "first_syn_frame": 1, "first_fin_frame": None, "first_rst_frame": 2, ...}}

As a script it (re)writes tests/captures/expected_tshark.json for every capture
under tests/captures/crafted and tests/captures/real:

    python3 tests/captures/tshark_truth.py            # write the JSON
    python3 tests/captures/tshark_truth.py --check    # compare with the JSON, exit 1 on diff
    python3 tests/captures/tshark_truth.py FILE...    # print streams of the given files

Fields used (innermost occurrence, so tunnels give the inner TCP/IP header):
frame.number tcp.stream tcp.flags ip.src ipv6.src tcp.srcport ip.dst ipv6.dst
tcp.dstport tcp.len.

Stream facts: first/last frame, packet count, frame of the first SYN (any SYN,
including SYN/ACK), first FIN, first RST, who sent them ("addr:port"), the
endpoint that sent the first packet, and counts of SYN/FIN/RST segments.
A segment with FIN+RST counts for both FIN and RST.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
JSON_PATH = os.path.join(HERE, "expected_tshark.json")

FIELDS = ["frame.number", "tcp.stream", "tcp.flags", "ip.src", "ipv6.src",
          "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport", "tcp.len"]

TH_FIN, TH_SYN, TH_RST = 0x01, 0x02, 0x04

# Deliberately malformed inputs: tshark's reaction is recorded, no streams.
BAD_INPUTS = {
    "crafted/not_a_capture.pcap",
    "crafted/corrupt_record.pcap",
    "crafted/empty.pcap",
    "crafted/zero_bytes.pcap",
}

# Human notes about what tshark does with a file (disagreements, decode limits).
NOTES = {
    "crafted/simultaneous_open.pcap":
        "tshark: one stream; it labels both SYN/ACKs (frames 3,4) [TCP Retransmission].",
    "crafted/port_reuse.pcap":
        "Intent: 3 connections on one 4-tuple (#1 frames 1-11 FIN, #2 frames 12-19 RST, "
        "#3 frames 20-30 FIN, same client ISN as #2). tshark DISAGREES: only 2 streams; "
        "it splits #1/#2 ([TCP Port numbers reused] on frame 12) but merges #2 and #3 "
        "(frame 20 shown as [TCP Retransmission] of frame 12's SYN), so stream 1 has "
        "first_rst 19 and first_fin 27.",
    "crafted/truncated.pcap":
        "last record cut; tshark shows the 10 complete records and reports "
        "'cut short in the middle of a packet' (rc 2). The cut record is the final ACK.",
    "crafted/snaplen96.pcap":
        "caplen 96 < frame length on data segments: tshark flags [Packet size limited "
        "during capture]; payload_bytes counts tcp.len (the on-the-wire length).",
    "crafted/rst_injected.pcap":
        "tshark attributes the injected RST (frame 7, IP TTL 250, IP ID 0; server uses "
        "TTL 64, IDs from 0x5A00) to the server like any other segment; no injection flag.",
    "crafted/handshake_missing.pcap":
        "no SYN captured: tshark still builds one stream; first_syn_frame is null.",
    "crafted/fin_and_rst.pcap": "frame 8 carries FIN+RST; counted as first FIN and first RST.",
    "crafted/pcapng_two_interfaces.pcapng":
        "IDB0 Ethernet/usec (frames 1-5), IDB1 raw IP/nsec if_tsresol=9 (frames 6-11); "
        "tshark joins them into one stream (encapsulation per-packet).",
    "crafted/raw_ip_linktype12.pcap": "pcap linktype 12 is read by tshark as raw IP.",
    "crafted/vxlan.pcap": "tshark decodes the inner TCP (UDP 4789 -> VXLAN -> Ethernet -> IPv4).",
    "crafted/gre.pcap": "tshark decodes the inner TCP (GRE proto 0x0800).",
    "crafted/mpls.pcap": "tshark decodes IPv4 after the MPLS label (heuristic on first nibble).",
    "crafted/pppoe.pcap": "tshark decodes PPPoE session -> PPP (0x0021) -> IPv4.",
    "real/dumpcap_two_ifaces.pcapng":
        "dumpcap writes per-interface batches: frames are NOT in timestamp order "
        "(lo streams 0,1 first, then veth streams 2,3 with earlier timestamps).",
    "real/dumpcap_two_ifaces.pcapng.gz": "gzip of real/dumpcap_two_ifaces.pcapng.",
    "real/lo_keepalive.pcap.gz": "gzip of real/lo_keepalive.pcap.",
    "real/killed_mid_write.pcap":
        "copy of lo_keepalive.pcap with the last record (the RST from the closed port) "
        "cut in half: tshark rc 2, and stream 2 is a lone SYN with no RST.",
    "real/snaplen96.pcap":
        "lo MTU 65536: the 50 KB body travels in a few large segments, each cut to 96 bytes.",
}

# What tshark does with the deliberately malformed inputs.
BAD_NOTES = {
    "crafted/not_a_capture.pcap": "plain text; tshark refuses it (rc 2).",
    "crafted/corrupt_record.pcap":
        "3rd record header claims caplen 0x7fffffff. tshark/wiretap mis-guesses the pcap "
        "variant (it tries the 'modified'/ss99x record layouts when the records do not "
        "parse), shows 3 garbage frames, then fails on a bogus 3440772672-byte record. "
        "A strict reader should return 2 good records and then an error.",
    "crafted/empty.pcap": "global header only: tshark reads 0 frames, rc 0.",
    "crafted/zero_bytes.pcap": "0-byte file: tshark reads 0 frames, rc 0 (capinfos calls it 'erf').",
}


def _tshark():
    exe = shutil.which("tshark")
    if not exe:
        raise RuntimeError("tshark not found in PATH")
    return exe


def run_tshark(path):
    """Run tshark on *path*; return (rows, returncode, stderr_without_banner)."""
    # pcapsense decodes Teredo by content, as Zeek does; tshark needs its heuristic on
    cmd = [_tshark(), "-n", "-o", "teredo.heuristic_teredo:TRUE", "-r", path, "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=l"]
    for f in FIELDS:
        cmd += ["-e", f]
    env = dict(os.environ, LC_ALL="C")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    err = "\n".join(ln for ln in p.stderr.splitlines()
                    if ln.strip() and "Running as user" not in ln).strip()
    err = err.replace(str(path), os.path.basename(str(path)))
    rows = []
    for line in p.stdout.splitlines():
        cols = line.split("\t")
        cols += [""] * (len(FIELDS) - len(cols))
        rows.append(dict(zip(FIELDS, cols)))
    return rows, p.returncode, err


def _ep(row, which):
    addr = row[f"ip.{which}"] or row[f"ipv6.{which}"]
    port = row["tcp.srcport" if which == "src" else "tcp.dstport"]
    return f"{addr}:{port}" if addr else f"?:{port}"


def streams_from_rows(rows):
    out: dict[int, dict] = {}
    for r in rows:
        if not r["tcp.stream"]:
            continue
        sid = int(r["tcp.stream"])
        fno = int(r["frame.number"])
        flags = int(r["tcp.flags"], 16) if r["tcp.flags"] else 0
        src, dst = _ep(r, "src"), _ep(r, "dst")
        s = out.get(sid)
        if s is None:
            s = out[sid] = {
                "decoded": True,
                "first_frame": fno, "last_frame": fno, "packets": 0,
                "first_src": src, "first_dst": dst,
                "first_syn_frame": None, "first_syn_from": None,
                "first_fin_frame": None, "first_fin_from": None,
                "first_rst_frame": None, "first_rst_from": None,
                "syn_count": 0, "fin_count": 0, "rst_count": 0,
                "payload_bytes": 0,
            }
        s["packets"] += 1
        s["last_frame"] = fno
        s["payload_bytes"] += int(r["tcp.len"] or 0)
        for bit, key in ((TH_SYN, "syn"), (TH_FIN, "fin"), (TH_RST, "rst")):
            if flags & bit:
                s[f"{key}_count"] += 1
                if s[f"first_{key}_frame"] is None:
                    s[f"first_{key}_frame"] = fno
                    s[f"first_{key}_from"] = src
    return dict(sorted(out.items()))


def tshark_streams(path) -> dict[int, dict]:
    """Per-TCP-stream facts for one capture, according to tshark (keys: tcp.stream)."""
    rows, _rc, _err = run_tshark(path)
    return streams_from_rows(rows)


def file_truth(path, rel=None):
    rows, rc, err = run_tshark(path)
    streams = streams_from_rows(rows)
    no_tcp = sum(1 for r in rows if not r["tcp.stream"])
    entry = {
        "size": os.path.getsize(path),
        "sha256": _sha256(path),
        "frames": len(rows),
        "tshark_rc": rc,
        "tshark_error": err or None,
        "tcp_decoded": bool(streams),
        "frames_without_tcp_stream": no_tcp,
        "stream_count": len(streams),
        "streams": {str(k): v for k, v in streams.items()},
    }
    notes = []
    if rel in NOTES:
        notes.append(NOTES[rel])
    if rows and not streams:
        notes.append("tshark decodes no TCP in this file (link type / encapsulation not decoded).")
    if notes:
        entry["note"] = " ".join(notes)
    return entry


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def capture_files(base=HERE):
    out = []
    for sub in ("crafted", "real"):
        d = os.path.join(base, sub)
        if not os.path.isdir(d):
            continue
        for n in sorted(os.listdir(d)):
            if n.endswith((".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz", ".cap")):
                out.append(f"{sub}/{n}")
    return out


def tshark_version():
    p = subprocess.run([_tshark(), "--version"], capture_output=True, text=True)
    return p.stdout.splitlines()[0] if p.stdout else "?"


def build_all(base=HERE):
    doc = {
        "_meta": {
            "generated_by": "tests/captures/tshark_truth.py",
            "tshark": tshark_version(),
            "fields": FIELDS,
            "occurrence": "last (innermost header for tunnels)",
            "stream_keys": "tcp.stream index as string",
            "syn_counts_include_synack": True,
            "fin_rst_segment_counts_for_both": True,
        },
        "files": {},
        "bad_inputs": {},
    }
    for rel in capture_files(base):
        path = os.path.join(base, rel)
        if rel in BAD_INPUTS:
            rows, rc, err = run_tshark(path)
            doc["bad_inputs"][rel] = {"size": os.path.getsize(path),
                                      "sha256": _sha256(path),
                                      "frames": len(rows), "tshark_rc": rc,
                                      "tshark_error": err or None,
                                      "note": BAD_NOTES.get(rel)}
            continue
        doc["files"][rel] = file_truth(path, rel)
    return doc


def _strip_volatile(doc):
    d = json.loads(json.dumps(doc))
    d.get("_meta", {}).pop("tshark", None)
    return d


def main(argv):
    if argv and argv[0] == "--check":
        new = build_all()
        with open(JSON_PATH) as f:
            old = json.load(f)
        if _strip_volatile(new) != _strip_volatile(old):
            for k in sorted(set(new["files"]) | set(old["files"])):
                if new["files"].get(k) != old["files"].get(k):
                    print("DIFF", k)
            return 1
        print("expected_tshark.json is up to date")
        return 0
    if argv:
        for p in argv:
            print(json.dumps({p: file_truth(p)}, indent=1))
        return 0
    doc = build_all()
    with open(JSON_PATH, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"wrote {JSON_PATH}: {len(doc['files'])} captures, {len(doc['bad_inputs'])} bad inputs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
