"""Stage 4: application layer over reassembled, sparse byte streams: HTTP/1.x
(`http1`), TLS (`tls`), cleartext HTTP/2 (`h2`), proxies; `facts` turns them into
per-connection columns for the classifier."""
