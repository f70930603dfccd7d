#!/usr/bin/env python3
"""The load client of bench/services.sh: one thread, one fresh TCP connection per request
(a gap in what listens behind a published port shows as refused, reset or timed-out
connections; a kept-alive connection would hide it), in a loop until SIGTERM/SIGINT.

    services_load.py --port PORT [--host 127.0.0.1] [--path /hello.txt]
                     [--interval 0.01] [--timeout 2] [--watch-listen] [--failures]
                     --out SUMMARY.json

A request counts as answered when it gets a 200 and its whole body; anything else (connect
refused, reset, a timeout of connect or read, an empty reply, another status) is a failed
request. An answer that took long (a SYN the network dropped is sent again after the
kernel's initial 1 s retransmission timeout) is listed as slow. The summary (written on
exit) holds the counts, the failures by kind, the longest gap between two answered
requests, the slow answers, and every outage (a run of failed requests) with the
wall-clock time of its first failure and of the answer that ended it, so that the
outages can be placed in the engines' event streams and logs.
"""
import argparse
import errno
import http.client
import json
import signal
import socket
import struct
import threading
import time


def one(host, port, path, timeout):
    """None when answered, else the kind of failure."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return "status %d" % resp.status
        if not body:
            return "empty body"
        return None
    except ConnectionRefusedError:
        return "refused"
    # Before ConnectionResetError, its base: the server closed without a reply.
    except http.client.RemoteDisconnected:
        return "closed without reply"
    except ConnectionResetError:
        return "reset"
    except (socket.timeout, TimeoutError):
        return "timeout"
    except OSError as e:
        # EHOSTUNREACH: the SYN waited for a neighbour (ARP) that never answered.
        return errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__
    except http.client.HTTPException as e:
        return type(e).__name__
    finally:
        conn.close()


def listening(port):
    """Whether a TCP socket listens on `port` in this network namespace, asked through
    sock_diag for listening sockets only (the kernel then walks its listening hash alone:
    reading /proc/net/tcp walks every bucket of the connection table, ~3 ms a read)."""
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)  # NETLINK_SOCK_DIAG
    try:
        for family in (socket.AF_INET, socket.AF_INET6):
            # struct inet_diag_req_v2: family, protocol, ext, pad, states (1 << TCP_LISTEN),
            # then a zeroed inet_diag_sockid (48 bytes).
            req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << 10) + bytes(48)
            # nlmsghdr: length, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, pid
            nl.send(struct.pack("=IHHII", 16 + len(req), 20, 0x301, 1, 0) + req)
            done = False
            while not done:
                data = nl.recv(65536)
                off = 0
                while off + 16 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, off)
                    if kind in (2, 3):  # NLMSG_ERROR, NLMSG_DONE
                        done = True
                        break
                    # inet_diag_msg: family, state, timer, retrans, then sport (big endian)
                    if struct.unpack_from("!H", data, off + 16 + 4)[0] == port:
                        return True
                    off += (length + 3) & ~3
    finally:
        nl.close()
    return False


def watch_listen(port, changes, stopped):
    """Records [wall time, listening] at each change, polled every 10 ms (Docker's
    docker-proxy listens on a published port; berth's kernel DNAT has no listener)."""
    last = None
    while not stopped.is_set():
        now = listening(port)
        if now != last:
            changes.append([time.time(), now])
            last = now
        stopped.wait(0.01)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/hello.txt")
    ap.add_argument("--interval", type=float, default=0.01,
                    help="pause after each request (s)")
    ap.add_argument("--timeout", type=float, default=2.0,
                    help="connect and read timeout of one request (s)")
    ap.add_argument("--watch-listen", action="store_true",
                    help="also record when something listens on the port")
    ap.add_argument("--failures", action="store_true",
                    help="list every failed request (start time, kind, ms) in the summary")
    ap.add_argument("--slow-ms", type=float, default=200,
                    help="answers slower than this are listed (a SYN retransmitted after a drop: ~1000 ms)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    listen_changes = []
    watcher_stop = threading.Event()
    watcher = None
    if a.watch_listen:
        watcher = threading.Thread(target=watch_listen, args=(a.port, listen_changes, watcher_stop),
                                   daemon=True)
        watcher.start()

    stop = False

    def on_signal(_sig, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    total = failed = 0
    kinds = {}
    outages = []  # [first failure (wall), ended by an answer at (wall), failed requests]
    failures = []  # with --failures: [start (wall), kind, ms], the first 10000
    slow = []  # answers slower than --slow-ms: [start (wall), ms], the first 10000
    cur = None
    last_ok = None  # monotonic time of the last answer
    longest_gap = 0.0
    slowest_ok = 0.0
    started = time.time()
    while not stop:
        t0 = time.monotonic()
        w0 = time.time()
        err = one(a.host, a.port, a.path, a.timeout)
        t1 = time.monotonic()
        total += 1
        if err is None:
            slowest_ok = max(slowest_ok, t1 - t0)
            if (t1 - t0) * 1000 > a.slow_ms and len(slow) < 10000:
                slow.append([w0, round((t1 - t0) * 1000, 1)])
            if last_ok is not None:
                longest_gap = max(longest_gap, t1 - last_ok)
            last_ok = t1
            if cur is not None:
                cur[1] = time.time()
                outages.append(cur)
                cur = None
        else:
            failed += 1
            kinds[err] = kinds.get(err, 0) + 1
            if a.failures and len(failures) < 10000:
                failures.append([w0, err, round((t1 - t0) * 1000, 1)])
            if cur is None:
                cur = [w0, None, 0, err]
            cur[2] += 1
        if a.interval > 0 and not stop:
            time.sleep(a.interval)
    if cur is not None:
        outages.append(cur)  # still failing at the end: no end time
    if watcher is not None:
        watcher_stop.set()
        watcher.join()
    summary = {
        "started": started,
        "ended": time.time(),
        "requests": total,
        "failed": failed,
        "kinds": kinds,
        "longest_gap_ms": round(longest_gap * 1000, 1),
        "slowest_answer_ms": round(slowest_ok * 1000, 1),
        "outages": [{"start": o[0], "end": o[1], "failed": o[2], "first_kind": o[3],
                     "ms": None if o[1] is None else round((o[1] - o[0]) * 1000, 1)}
                    for o in outages],
        "listen": listen_changes,
        "slow": slow,
    }
    if a.failures:
        summary["failures"] = failures
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
