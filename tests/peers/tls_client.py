"""A TLS client made with Python's ssl module, for the end-to-end tests.

  tls_client.py HOST PORT [--ca FILE] [--sni NAME] [--version 1.2|1.3] [--cert FILE --key FILE]
                [--send TEXT] [--source ADDR]

Prints one JSON object: the TLS version, the reply to TEXT (read until as many bytes came
back), the server certificate (DER, hex); or {"error": ...} when the handshake or the exchange
failed. Every wait is bounded by a 10 s timeout.
"""
import argparse
import json
import socket
import ssl

ap = argparse.ArgumentParser()
ap.add_argument("host")
ap.add_argument("port", type=int)
ap.add_argument("--ca")
ap.add_argument("--sni", default="localhost")
ap.add_argument("--version")
ap.add_argument("--cert")
ap.add_argument("--key")
ap.add_argument("--send", default="")
ap.add_argument("--source")
a = ap.parse_args()

ctx = ssl.create_default_context(cafile=a.ca)
if a.version:
    v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[a.version]
    ctx.minimum_version = ctx.maximum_version = v
if a.cert:
    ctx.load_cert_chain(a.cert, a.key)
try:
    src = (a.source, 0) if a.source else None
    with socket.create_connection((a.host, a.port), timeout=10, source_address=src) as s:
        with ctx.wrap_socket(s, server_hostname=a.sni) as t:
            want = a.send.encode()
            t.sendall(want)
            got = b""
            while len(got) < len(want):
                chunk = t.recv(65536)
                if not chunk:
                    break
                got += chunk
            print(json.dumps({"version": t.version(), "reply": got.decode(errors="replace"),
                              "cert": t.getpeercert(binary_form=True).hex()}))
except (ssl.SSLError, OSError) as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
