"""The Docker SDK for Python (from PyPI) against a berth daemon: volumes end to end.

Usage: python3 volumes.py unix:///path/berth.sock FIXTURE_DIR
Exits non-zero with a message on the first expectation that does not hold.
"""
import sys

import docker
import docker.errors


def expect(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def main():
    host, fixtures = sys.argv[1], sys.argv[2]
    c = docker.DockerClient(base_url=host)
    with open(f"{fixtures}/app-docker-save.tar", "rb") as f:
        c.images.load(f.read())
    # Names: at least two characters, Docker's words for one (400, nothing made).
    try:
        c.volumes.create(name="v")
        sys.exit("FAIL: a one-character volume name was accepted")
    except docker.errors.APIError as e:
        expect(e.status_code == 400, f"status {e.status_code}")
        expect("volume name is too short, names should be at least two alphanumeric characters"
               in str(e), f"message {e}")
    expect(c.volumes.list() == [], "a volume was made")
    vol = c.volumes.create(name="sdkdata", driver="local", labels={"team": "sdk"})
    expect(vol.name == "sdkdata", f"create gave {vol.name}")
    expect(vol.attrs["Driver"] == "local" and vol.attrs["Scope"] == "local", f"attrs {vol.attrs}")
    expect(vol.attrs["Labels"] == {"team": "sdk"}, f"labels {vol.attrs['Labels']}")
    expect([v.name for v in c.volumes.list(filters={"label": "team=sdk"})] == ["sdkdata"], "list by label")
    got = c.volumes.get("sdkdata")
    expect(got.attrs["Mountpoint"].endswith("/volumes/sdkdata/_data"), f"mountpoint {got.attrs}")

    # A container writes into the volume, another reads it back.
    w = c.containers.run("fixture/app:1", ["echo from-sdk > /data/f"], detach=True,
                         volumes={"sdkdata": {"bind": "/data", "mode": "rw"}})
    expect(w.wait()["StatusCode"] == 0, "writer exit")
    mounts = c.api.inspect_container(w.id)["Mounts"]
    expect(len(mounts) == 1 and mounts[0]["Name"] == "sdkdata" and mounts[0]["RW"], f"mounts {mounts}")
    try:
        got.remove()
        expect(False, "removed a volume in use")
    except docker.errors.APIError as e:
        expect(e.status_code == 409 and w.id in str(e), f"in-use error {e}")
    r = c.containers.run("fixture/app:1", ["cat /data/f"], detach=True,
                         mounts=[docker.types.Mount("/data", "sdkdata", type="volume", read_only=True)])
    expect(r.wait()["StatusCode"] == 0, "reader exit")
    expect(r.logs().decode().strip() == "from-sdk", f"reader logs {r.logs()}")
    t = c.containers.run("fixture/app:1", ["busybox grep ' /scratch ' /proc/mounts"], detach=True,
                         tmpfs={"/scratch": "size=1m"})
    t.wait()
    expect("tmpfs /scratch tmpfs" in t.logs().decode() and "size=1024k" in t.logs().decode(), f"tmpfs {t.logs()}")
    for x in (w, r, t):
        x.remove(v=True)
    expect("sdkdata" in [v.name for v in c.volumes.list()], "named volume survives rm -v")
    got.remove()
    expect(c.volumes.list() == [], "remove")
    c.volumes.create()  # anonymous
    pruned = c.volumes.prune()
    expect(len(pruned["VolumesDeleted"] or []) == 1, f"prune {pruned}")
    try:
        c.volumes.get("nope")
        expect(False, "missing volume found")
    except docker.errors.NotFound as e:
        expect("no such volume" in str(e), f"not-found message {e}")
    print("ok")


if __name__ == "__main__":
    main()
