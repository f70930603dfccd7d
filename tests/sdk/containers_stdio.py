"""The Docker SDK for Python against a berth daemon: running containers in the
foreground and attaching to them.

Usage: python3 containers_stdio.py unix:///path/berth.sock FIXTURE_DIR
Exits non-zero with a message on the first expectation that does not hold.
"""
import socket
import sys

import docker

IMAGE = "fixture/app:1"  # entrypoint /bin/sh -c


def expect(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def read_frames(sock, want):
    """Reads Docker's multiplexed stream until `want` was seen on stdout."""
    buf = b""
    out = b""
    while want not in out:
        data = sock.recv(65536)
        if not data:
            break
        buf += data
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            if buf[0] == 1:
                out += buf[8 : 8 + size]
            buf = buf[8 + size :]
    return out


def main():
    host, fixtures = sys.argv[1], sys.argv[2]
    c = docker.DockerClient(base_url=host)
    with open(f"{fixtures}/app-docker-save.tar", "rb") as f:
        c.images.load(f.read())

    # The SDK splits a command string into words; the image's entrypoint is `sh -c`, so
    # the script goes as one word.
    out = c.containers.run(IMAGE, ["echo hi"])
    expect(out == b"hi\n", f"containers.run gave {out!r}")
    try:
        c.containers.run(IMAGE, ["echo bad >&2; exit 3"])
        expect(False, "a failing container raises ContainerError")
    except docker.errors.ContainerError as e:
        expect(e.exit_status == 3, f"exit status {e.exit_status}")

    # attach(stream=True) to a running container: its output as it comes.
    ticker = c.containers.run(
        IMAGE, ["i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"], detach=True
    )
    stream = ticker.attach(stream=True, stdout=True, stderr=True)
    got = b""
    for chunk in stream:
        got += chunk
        if got.count(b"\n") >= 3:
            break
    expect(got.startswith(b"tick "), f"attach stream gave {got!r}")
    ticker.kill()

    # attach_socket with stdin: what is sent comes back through cat.
    cat = c.containers.create(IMAGE, ["cat"], stdin_open=True)
    cat.start()
    sock = cat.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
    raw = sock._sock if hasattr(sock, "_sock") else sock
    raw.sendall(b"ping\n")
    echoed = read_frames(raw, b"ping\n")
    expect(echoed == b"ping\n", f"attach_socket echoed {echoed!r}")
    # The SDK creates stdin_open containers with StdinOnce: closing our input closes
    # the container's stdin, and cat ends.
    expect(cat.attrs["Config"]["StdinOnce"], "StdinOnce recorded")
    raw.shutdown(socket.SHUT_WR)
    status = cat.wait(timeout=60)
    expect(status["StatusCode"] == 0, f"cat ended with {status}")
    raw.close()
    print("ok")


main()
