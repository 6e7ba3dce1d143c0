"""Real servers and clients on loopback for the `record` / `watch` tests.

`Server`: an HTTP/1.1 keep-alive server in a thread (optionally TLS, with a certificate
made here), which answers GET /ok and, on the second request of a connection to /b,
closes it without a response (what nginx does at `keepalive_requests`, seen by the
client as `RemoteDisconnected`). The clients are real libraries run as programs
(requests, in a child interpreter: `client_script`).
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path


def make_cert(dirpath: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (cryptography)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    crt, kf = dirpath / "cert.pem", dirpath / "key.pem"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kf.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return crt, kf


class Server:
    def __init__(self, tls: tuple[Path, Path] | None = None, hold_s: float = 0.0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.ctx = None
        if tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        self.hold_s = hold_s
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def _handle(self, c):
        try:
            if self.ctx:
                c = self.ctx.wrap_socket(c, server_side=True)
            c.settimeout(5.0)
            buf, n = b"", 0
            while True:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
                while b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    n += 1
                    if n >= 2 and b" /b " in head:
                        return                     # closed without a response
                    if b" /slow " in head:
                        threading.Event().wait(self.hold_s)
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self.stopped = True
        self.sock.close()


CLIENT = r'''
import logging, sys, time, requests
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
base, rounds, verify = sys.argv[1], int(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else True)
s = requests.Session()
s.mount(base, requests.adapters.HTTPAdapter(max_retries=0))
failed = 0
for i in range(rounds):
    try:
        print(s.get(base + "/a", verify=verify).status_code, flush=True)
        print(s.get(base + "/b", verify=verify).status_code, flush=True)
    except Exception:
        failed += 1
        logging.exception("round %d failed", i)
    time.sleep(0.15)
sys.exit(10 + failed)
'''


HTTPX_CLIENT = r'''
import logging, sys, time, httpx
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
base, rounds = sys.argv[1], int(sys.argv[2])
failed = 0
with httpx.Client() as c:
    for i in range(rounds):
        try:
            print(c.get(base + "/a").status_code, flush=True)
            print(c.get(base + "/b").status_code, flush=True)
        except Exception:
            failed += 1
            logging.exception("round %d failed", i)
        time.sleep(0.15)
sys.exit(10 + failed)
'''

# aiohttp retries an idempotent request on a new connection by itself (field notes): the
# request the server drops is a POST, which it does not retry
AIOHTTP_CLIENT = r'''
import asyncio, logging, sys, aiohttp
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
base, rounds = sys.argv[1], int(sys.argv[2])
async def main():
    failed = 0
    async with aiohttp.ClientSession() as s:
        for i in range(rounds):
            try:
                async with s.get(base + "/a") as r:
                    print(r.status, await r.text(), flush=True)
                async with s.post(base + "/b", data=b"") as r:
                    print(r.status, flush=True)
            except Exception:
                failed += 1
                logging.exception("round %d failed", i)
            await asyncio.sleep(0.15)
    return failed
sys.exit(10 + asyncio.run(main()))
'''

CLIENTS = {"requests": CLIENT, "httpx": HTTPX_CLIENT, "aiohttp": AIOHTTP_CLIENT}


def client_script(dirpath: Path, library: str = "requests") -> Path:
    p = dirpath / f"client_{library}.py"
    p.write_text(CLIENTS[library])
    return p
