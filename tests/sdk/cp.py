"""The Docker SDK for Python against a berth daemon: Container.put_archive / get_archive.

Usage: python3 cp.py unix:///path/berth.sock   (the image fixture/app:1 is loaded)
Exits non-zero with a message on the first expectation that does not hold.
"""
import io
import sys
import tarfile

import docker


def expect(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def main():
    c = docker.DockerClient(base_url=sys.argv[1])
    ctr = c.containers.create("fixture/app:1", "sleep 1000", name="py")
    data = b"from python\n"
    buf = io.BytesIO()
    # gzip-compressed: the API accepts it as Docker does.
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        d = tarfile.TarInfo("py")
        d.type = tarfile.DIRTYPE
        d.mode = 0o750
        t.addfile(d)
        info = tarfile.TarInfo("py/hello.txt")
        info.size = len(data)
        info.mode = 0o600
        info.mtime = 1600000000
        t.addfile(info, io.BytesIO(data))
    expect(ctr.put_archive("/tmp", buf.getvalue()), "put_archive returned false")

    bits, stat = ctr.get_archive("/tmp/py/hello.txt")
    expect(stat["name"] == "hello.txt", f"stat name: {stat}")
    expect(stat["size"] == len(data), f"stat size: {stat}")
    expect(stat["mode"] == 0o600, f"stat mode: {stat}")
    expect(stat["mtime"].startswith("2020-09-13T12:26:40"), f"stat mtime: {stat}")
    raw = b"".join(bits)
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        m = t.getmember("hello.txt")
        expect(t.extractfile(m).read() == data, "content")
        expect(m.mtime == 1600000000, f"mtime {m.mtime}")

    bits, stat = ctr.get_archive("/tmp/py")
    expect(stat["mode"] == (1 << 31) | 0o750, f"dir stat: {stat}")
    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as t:
        names = sorted(t.getnames())
        expect(names == ["py", "py/hello.txt"], f"names {names}")

    try:
        ctr.get_archive("/nope")
        sys.exit("FAIL: get_archive of a missing path succeeded")
    except docker.errors.NotFound as e:
        expect("Could not find the file /nope" in str(e), str(e))
    try:
        ctr.put_archive("/nope", buf.getvalue())
        sys.exit("FAIL: put_archive into a missing directory succeeded")
    except docker.errors.NotFound:
        pass
    ctr.remove(force=True)
    print("ok")


if __name__ == "__main__":
    main()
