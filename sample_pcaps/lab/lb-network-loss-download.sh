#!/usr/bin/env bash
# network-loss: client - router - server namespaces; an aiohttp client downloads a 20 MB
# file from nginx (limit_rate 300k) with ClientTimeout(sock_read=2). After ~0.5 s the
# router starts dropping the server->client direction only (iptables -I FORWARD -s SERVER
# -j DROP): the server's data segments are retransmitted with RTO backoff while the client
# sits with duplicate ACKs/window updates; the client times out (sock_read 2 s) and closes;
# its FIN reaches the server, but the server's packets never come back.
# Capture: tcpdump on the SERVER-side veth (server namespace, MTU 1500, offloads off), so
# the server's retransmissions are visible; converted to pcapng.
LB_SCEN=lb-network-loss-download
source "$(dirname "$0")/lb_lib.sh"
lb_router 82
PORT=19082
CAP=$LB_OUT/$LB_SCEN.pcapng
head -c 20000000 /dev/zero | tr '\0' 'w' > "$LB_WORK/big.bin"
lb_nginx "$NS_S" nl2 "server { listen $S_IP:$PORT; location / { root $LB_WORK; limit_rate 300k; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_S" pcapng "$CAP" -i "$S_DEV" -s 0 tcp
lb_bg "$NS_C" "$LB_WORK/client.jsonl" timeout 25 python3 -u - "$S_IP" $PORT <<'PY'
import asyncio, json, sys, time, aiohttp
ip, port = sys.argv[1], int(sys.argv[2])
async def main():
    got = 0; lp = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=2)) as s:
        t0 = time.time()
        try:
            async with s.get(f"http://{ip}:{port}/big.bin") as r:
                lp = r.connection.transport.get_extra_info("sockname")[1]
                async for chunk in r.content.iter_chunked(65536):
                    got += len(chunk)
                    if got > 100000 and not t0 is None:
                        print(json.dumps({"event": "flowing"}), flush=True); t0 = None
        except Exception as e:
            print(json.dumps({"port": lp, "saw": f"HTTP 200, then {type(e).__name__}: {e!r} after {got} bytes"}), flush=True)
    await asyncio.sleep(4)
    print(json.dumps({"event": "done"}), flush=True)
asyncio.run(main())
PY
CLIENT=$LB_PID
for _ in $(seq 1 50); do grep -q flowing "$LB_WORK/client.jsonl" && break; sleep 0.1; done
sleep 0.3
ip netns exec "$NS_R" iptables -I FORWARD -s "$S_IP" -j DROP
lb_log "router: DROP server->client inserted"
for _ in $(seq 1 150); do grep -q '"done"' "$LB_WORK/client.jsonl" && break; sleep 0.1; done
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
