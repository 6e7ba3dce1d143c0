#!/usr/bin/env bash
# client-abort: nginx (limit_rate 400k) serves a 20 MB file over a veth pair; curl
# --max-time 1 gives up mid-download ("Operation timed out", exit 28), and an aiohttp
# client cancels its download task after 150 KB. Both close while the response is flowing.
# Capture: tcpdump (converted to pcapng with editcap) on the client's veth (10.99.32.0/24, MTU 1500, offloads off), pcapng.
LB_SCEN=lb-client-abort-curl
source "$(dirname "$0")/lb_lib.sh"
lb_pair 32
PORT=19032
CAP=$LB_OUT/$LB_SCEN.pcapng
head -c 20000000 /dev/zero | tr '\0' 'y' > "$LB_WORK/big.bin"
lb_nginx "$NS_S" ca2 "server { listen $S_IP:$PORT; location / { root $LB_WORK; limit_rate 400k; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" pcapng "$CAP" -i "$C_DEV" -s 0 tcp
set +e
timeout 10 ip netns exec "$NS_C" curl -sS -o /dev/null --max-time 1 -w '%{local_port} %{http_code} %{size_download}\n' \
    "http://$S_IP:$PORT/big.bin" >"$LB_WORK/curl.out" 2>"$LB_WORK/curl.err"
rc=$?
set -e
read -r lport code size <"$LB_WORK/curl.out" || true
python3 -c 'import json,sys; print(json.dumps({"port": int(sys.argv[1]), "saw": "curl exit %s: %s (HTTP %s, %s bytes received)" % (sys.argv[2], sys.argv[3].strip(), sys.argv[4], sys.argv[5])}))' \
    "$lport" "$rc" "$(cat "$LB_WORK/curl.err")" "$code" "$size" >"$LB_WORK/client.jsonl"
timeout 20 ip netns exec "$NS_C" python3 - "$S_IP" $PORT >>"$LB_WORK/client.jsonl" <<'PY' || lb_log "client exited with status $?"
import asyncio, json, sys, aiohttp
ip, port = sys.argv[1], int(sys.argv[2])
async def main():
    async with aiohttp.ClientSession() as s:
        info = {}
        async def dl():
            async with s.get(f"http://{ip}:{port}/big.bin") as r:
                info["port"] = r.connection.transport.get_extra_info("sockname")[1]
                info["status"] = r.status
                got = 0
                async for chunk in r.content.iter_chunked(16384):
                    got += len(chunk); info["got"] = got
                    if got >= 150000:
                        await asyncio.sleep(10)   # the task is cancelled while waiting
        t = asyncio.ensure_future(dl())
        while info.get("got", 0) < 150000:
            await asyncio.sleep(0.05)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            print(json.dumps({"port": info["port"], "saw": f"HTTP {info['status']}; download task cancelled after {info['got']} bytes (CancelledError)"}), flush=True)
    await asyncio.sleep(0.5)
asyncio.run(main())
PY
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
