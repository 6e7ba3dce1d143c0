"""What the Python user saw and what to do, per cause (from the seed article's sections;
see ../shared/taxonomy.md). Text only: no capture data is formatted into these."""

CAUSES = [
    "graceful", "idle-close", "keepalive-race", "request-rejected", "server-timeout",
    "body-too-large", "rate-limited", "pool-overflow", "connection-leak", "proxy-disconnect",
    "tls-handshake-failure", "tls-certificate-rejected", "middlebox-reset", "server-abort",
    "connection-refused", "network-loss", "client-timeout", "client-abort", "http2-goaway",
    "incomplete", "unknown",
]

PYTHON_ERROR = {
    "graceful": "nothing: success",
    "idle-close": "nothing yet (the next reuse of this connection may race)",
    "keepalive-race": "http.client.RemoteDisconnected('Remote end closed connection without response') / "
                      "aiohttp ServerDisconnectedError / ConnectionResetError",
    "request-rejected": "RemoteDisconnected / ConnectionError('Connection aborted.')",
    "server-timeout": "RemoteDisconnected / aiohttp ServerDisconnectedError after a long wait",
    "body-too-large": "ConnectionError('Connection aborted.', BrokenPipeError) or HTTP 413",
    "rate-limited": "HTTP 429/503, then urllib3 MaxRetryError / RetryError",
    "pool-overflow": "urllib3 WARNING 'Connection pool is full, discarding connection'",
    "connection-leak": "ResourceWarning: unclosed socket, later RemoteDisconnected",
    "proxy-disconnect": "requests.exceptions.ProxyError ('Tunnel connection failed: 502')",
    "tls-handshake-failure": "ssl.SSLError (WRONG_VERSION_NUMBER / TLSV1_ALERT_PROTOCOL_VERSION / "
                             "SSLV3_ALERT_HANDSHAKE_FAILURE)",
    "tls-certificate-rejected": "ssl.SSLCertVerificationError: certificate verify failed",
    "middlebox-reset": "ConnectionResetError: [Errno 104] Connection reset by peer",
    "server-abort": "ConnectionResetError: [Errno 104] Connection reset by peer / ChunkedEncodingError",
    "connection-refused": "ConnectionRefusedError: [Errno 111] / urllib3 NewConnectionError",
    "network-loss": "requests ConnectTimeout / ReadTimeout, or ConnectionResetError",
    "client-timeout": "requests.exceptions.ReadTimeout / asyncio.TimeoutError",
    "client-abort": "none on the client (it cancelled); the server logs a broken pipe",
    "http2-goaway": "aiohttp ServerDisconnectedError / httpx RemoteProtocolError",
    "incomplete": "-",
    "unknown": "depends",
}

# (article section, one line, snippet)
FIX = {
    "graceful": ("-", "Nothing to fix.", ""),
    "idle-close": ("3.3", "Keep the client's idle timeout below the server's keep-alive timeout.",
                   "# urllib3 checks pooled sockets; for aiohttp:\n"
                   "aiohttp.TCPConnector(keepalive_timeout=SERVER_TIMEOUT - 1)"),
    "keepalive-race": ("1.3, 3.3", "Expire pooled connections before the server does, and retry "
                       "idempotent requests on a fresh connection.",
                       "from urllib3.util.retry import Retry\n"
                       "s.mount('https://', HTTPAdapter(max_retries=Retry(total=3, allowed_methods=None)))\n"
                       "# aiohttp: TCPConnector(keepalive_timeout=SERVER_TIMEOUT - 1)"),
    "request-rejected": ("3.8", "The server refused the request itself: send the headers it expects "
                         "(User-Agent, Host, auth) and check WAF/CDN rules.",
                         "s.headers.update({'User-Agent': 'my-service/1.0'})"),
    "server-timeout": ("1.3", "The server gave up before answering: make the handler faster, raise the "
                       "server's worker timeout, or send less work per request.",
                       "# gunicorn --timeout 60 ; retry with backoff on the client"),
    "body-too-large": ("3.6", "Stay under the server's body limit (nginx client_max_body_size, 1 MB by "
                       "default): raise it or upload in chunks.",
                       "# nginx: client_max_body_size 50m;"),
    "rate-limited": ("1.3, 3.1", "Lower concurrency and retry 429/503 with backoff honouring Retry-After.",
                     "Retry(total=5, backoff_factor=1, status_forcelist=[429, 503],\n"
                     "      respect_retry_after_header=True)"),
    "pool-overflow": ("3.2", "Size the pool to the concurrency you use.",
                      "s.mount('https://', HTTPAdapter(pool_connections=10, pool_maxsize=THREADS))"),
    "connection-leak": ("1.3", "Release connections: close responses and sessions (context managers).",
                        "with requests.Session() as s:\n    with s.get(url, stream=True) as r:\n        ..."),
    "proxy-disconnect": ("3.5", "The proxy dropped the request: check the proxy's logs, upstream "
                         "reachability and credentials; retry through another proxy.",
                         "requests.get(url, proxies={'https': 'http://proxy:3128'}, timeout=10)"),
    "tls-handshake-failure": ("3.7", "Client and server share no TLS version/cipher (or it is not TLS): "
                              "align versions, check the port and SNI.",
                              "ctx = ssl.create_default_context(); ctx.minimum_version = ssl.TLSVersion.TLSv1_2"),
    "tls-certificate-rejected": ("3.7", "The client did not trust the server's certificate: install the "
                                 "CA bundle or fix the chain; do not disable verification.",
                                 "requests.get(url, verify='/path/to/ca-bundle.pem')"),
    "middlebox-reset": ("2.2, 1.3", "A firewall, load balancer or NAT reset the connection: check its idle "
                        "timeouts and rules; send TCP keep-alives below its idle timeout.",
                        "sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)"),
    "server-abort": ("2.2", "The server process aborted the connection (crash, restart, SO_LINGER 0): "
                     "check its logs; retry idempotent requests.",
                     "Retry(total=3, connect=3, read=2, allowed_methods=None)"),
    "connection-refused": ("-", "Nothing listens there (or the backlog is full): check host, port and "
                           "that the service is up.", ""),
    "network-loss": ("3.9", "Packets were lost on the path: retransmissions backed off until the "
                     "connection died. Check the network; set connect/read timeouts and retry.",
                     "requests.get(url, timeout=(3.05, 27))"),
    "client-timeout": ("3.9", "The client gave up waiting: raise the read timeout or make the server faster.",
                       "requests.get(url, timeout=(3.05, 60))"),
    "client-abort": ("-", "The client stopped reading the response (cancelled, killed, or stream "
                     "abandoned).", ""),
    "http2-goaway": ("3.11", "The server sent GOAWAY: open a new connection and retry requests above the "
                     "last stream id.", "httpx.Client(http2=True, transport=httpx.HTTPTransport(retries=3))"),
    "incomplete": ("-", "The capture ended while the connection was open.", ""),
    "unknown": ("3.10", "No rule matched: look at the evidence frames in Wireshark.", ""),
}


_DISCONNECT = {"keepalive-race", "request-rejected", "server-timeout"}


def python_error(cause: str, user_agent: str | None, method: str | None) -> str:
    """The exception, refined by the client library (User-Agent) and the method where
    the libraries differ (field notes: aiohttp retries an idempotent GET silently)."""
    ua = (user_agent or "").lower()
    if cause in _DISCONNECT or cause == "server-abort":
        if "aiohttp" in ua:
            if cause == "keepalive-race" and method in ("GET", "HEAD", "OPTIONS"):
                return "nothing visible: aiohttp retried the idempotent request on a new connection"
            return "aiohttp.ServerDisconnectedError: Server disconnected"
        if "python-requests" in ua:
            if cause == "server-abort":
                return "requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))"
            return ("requests.exceptions.ConnectionError: ('Connection aborted.', "
                    "RemoteDisconnected('Remote end closed connection without response'))")
        if "httpx" in ua:
            return "httpx.RemoteProtocolError: Server disconnected without sending a response."
        if "python-urllib" in ua:
            return "urllib.error.URLError / http.client.RemoteDisconnected('Remote end closed connection without response')"
    if cause == "client-timeout":
        if "aiohttp" in ua:
            return "asyncio.TimeoutError (aiohttp ClientTimeout)"
        if "httpx" in ua:
            return "httpx.ReadTimeout"
        if "python-requests" in ua:
            return "requests.exceptions.ReadTimeout: HTTPConnectionPool(...): Read timed out."
    return PYTHON_ERROR[cause]
