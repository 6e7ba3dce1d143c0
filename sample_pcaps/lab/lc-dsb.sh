#!/usr/bin/env bash
# The lc-tls-suites capture with its key log embedded: editcap --inject-secrets writes a
# pcapng Decryption Secrets Block (secrets type TLSK, the key log text verbatim) before the
# packets, so tshark (and pcapsense) can decrypt it without a separate key log. Same packets,
# same connections; the labels are recomputed from the new file (TLS facts read with the
# embedded secrets only, has_key from the DSB) and the client's logged results are carried
# over from lc-tls-suites.labels.json. No namespaces, no traffic: run lc-tls-suites.sh first.
LC_SCEN=lc-tls-suites-dsb
source "$(dirname "$0")/lc_lib.sh"
IN=$LB_OUT/lc-tls-suites.pcapng
KEYS=$LB_OUT/lc-tls-suites.keys
OUTF=$LB_OUT/lc-tls-suites-dsb.pcapng
for f in "$IN" "$KEYS" "$LB_OUT/lc-tls-suites.labels.json"; do
    [ -f "$f" ] || { lc_log "missing $f: run sample_pcaps/lab/lc-tls-suites.sh first"; exit 1; }
done
rm -f "$OUTF"
timeout 60 editcap --inject-secrets "tls,$KEYS" "$IN" "$OUTF"
python3 - "$LB_OUT/lc-tls-suites.labels.json" >"$LB_WORK/client.jsonl" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1]))["connections"]:
    ev = {"port": int(c["client"].rsplit(":", 1)[1]), "saw": c["client_saw"]}
    if c.get("client_program"):
        ev["client"] = c["client_program"]
    print(json.dumps(ev))
PY
python3 "$LC_LAB/lc_label.py" "$LB_SCEN" "$OUTF" "$LB_WORK/client.jsonl" -
n=$(timeout 60 tshark -n -r "$OUTF" -Y 'http.request or http.response' 2>/dev/null | wc -l)
n2=$(timeout 60 tshark -n -r "$OUTF" -Y 'http2.type == 1' 2>/dev/null | wc -l)
lc_log "tshark check without -o: $(basename "$OUTF"): $n HTTP/1 messages, $n2 frames with HTTP/2 HEADERS decrypted from the embedded secrets"
