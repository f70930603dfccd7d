"""What attaching before the start costs the start: POST /start of a created container,
without and with an attach pending (the docker CLI's `run` without -d), through the API,
alternating. (The name is from when the start was a handshake between engine and shim;
since 96ac8f4 the attached clients are handed to the shim with the start.)

Usage: python3 start_handshake.py SOCKET [N=15]   (fixture/app:1 loaded; see run.sh)
"""
import json
import socket
import statistics
import sys
import time

S = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 15


def req(method, path, body=None, upgrade=False, keep=False):
    s = socket.socket(socket.AF_UNIX); s.connect(S)
    data = json.dumps(body).encode() if body is not None else b""
    h = f"{method} {path} HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    if upgrade: h += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    s.sendall(h.encode() + b"\r\n" + data)
    resp = b""
    while b"\r\n\r\n" not in resp: resp += s.recv(65536)
    if keep: return s, resp
    if b"Content-Length" in resp or b"content-length" in resp:
        hdr, _, rest = resp.partition(b"\r\n\r\n")
        n = int([l for l in hdr.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
        while len(rest) < n: rest += s.recv(65536)
        s.close(); return rest
    s.close(); return resp
def one(attach):
    cid = json.loads(req("POST", "/v1.47/containers/create", {"Image": "fixture/app:1", "Cmd": ["true"]}))["Id"]
    a = None
    if attach:
        a, _ = req("POST", f"/v1.47/containers/{cid}/attach?stream=1&stdout=1&stderr=1", upgrade=True, keep=True)
    t = time.perf_counter(); req("POST", f"/v1.47/containers/{cid}/start"); dt = time.perf_counter() - t
    if a:
        while a.recv(65536): pass
        a.close()
    time.sleep(0.3)
    req("DELETE", f"/v1.47/containers/{cid}?force=1")
    return dt * 1000
for attach in (False, True, False, True):
    xs = [one(attach) for _ in range(N)]
    print(f"start {'with pending attach' if attach else 'detached'}: median {statistics.median(xs):.1f} ms, min {min(xs):.1f} ms")
