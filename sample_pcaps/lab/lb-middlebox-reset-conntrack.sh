#!/usr/bin/env bash
# middlebox-reset: a stateful firewall forgets an idle connection. Router namespace with
#   sysctl net.netfilter.nf_conntrack_tcp_timeout_established=2, nf_conntrack_tcp_loose=0
#   iptables -A FORWARD -p tcp -m conntrack --ctstate INVALID -j REJECT --reject-with tcp-reset
#   (plus a rule that makes every forwarded TCP packet go through conntrack)
# http.client (keep-alive, nginx keepalive_timeout 30s) makes one request, stays idle 3.5 s,
# then sends a second request on the same connection: conntrack no longer knows the flow,
# the packet is INVALID and the router answers with an RST in the server's name (TTL 64;
# the server's own packets arrive with TTL 63). The server never sees anything.
# aiohttp does the same on a second connection (it retries a GET once on a new connection).
# Capture: tcpdump (converted to pcapng with editcap) on the client-side veth, pcapng.
LB_SCEN=lb-middlebox-reset-conntrack
source "$(dirname "$0")/lb_lib.sh"
lb_router 72
PORT=19072
CAP=$LB_OUT/$LB_SCEN.pcapng
ip netns exec "$NS_R" iptables -A FORWARD -p tcp -m conntrack --ctstate INVALID -j REJECT --reject-with tcp-reset
ip netns exec "$NS_R" iptables -A FORWARD -p tcp -m conntrack --ctstate NEW,ESTABLISHED,RELATED -j ACCEPT
ip netns exec "$NS_R" sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_established=2 net.netfilter.nf_conntrack_tcp_loose=0
lb_nginx "$NS_S" mb2 "server { listen $S_IP:$PORT; keepalive_timeout 30s; location / { return 200 'hello\n'; } }"
lb_wait_port "$NS_C" "$S_IP" $PORT
lb_capture_start "$NS_C" pcapng "$CAP" -i "$C_DEV" -s 0 tcp
timeout 25 ip netns exec "$NS_C" python3 - "$S_IP" $PORT >"$LB_WORK/client.jsonl" 2>"$LB_WORK/client.err" <<'PY' || lb_log "client exited with status $?"
import asyncio, http.client, json, sys, time, aiohttp
ip, port = sys.argv[1], int(sys.argv[2])
c = http.client.HTTPConnection(ip, port, timeout=5)
c.request("GET", "/first"); r = c.getresponse(); r.read()
lport = c.sock.getsockname()[1]
time.sleep(3.5)
try:
    c.request("GET", "/second"); r2 = c.getresponse(); saw = f"HTTP {r.status}, then HTTP {r2.status}"
except Exception as e:
    saw = f"HTTP {r.status}, then after 3.5 s idle {type(e).__name__}: {e}"
c.close()
print(json.dumps({"port": lport, "saw": saw, "client": "http.client"}), flush=True)
async def main():
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://{ip}:{port}/a1") as r:
            await r.read(); st = r.status
        lp = None
        for conns in s.connector._conns.values():      # the idle pooled connection
            for item in conns:
                proto = item[0] if isinstance(item, tuple) else item
                lp = proto.transport.get_extra_info("sockname")[1]
        await asyncio.sleep(3.5)
        try:
            async with s.post(f"http://{ip}:{port}/a2", data=b"x") as r:
                await r.read(); saw = f"HTTP {st}, then HTTP {r.status}"
        except Exception as e:
            saw = f"HTTP {st}, then after 3.5 s idle {type(e).__name__}: {e}"
        print(json.dumps({"port": lp, "saw": saw, "client": "aiohttp POST"}), flush=True)
asyncio.run(main())
PY
sleep 0.5
lb_capture_stop
lb_label "$LB_SCEN" "$CAP" "$LB_WORK/client.jsonl"
