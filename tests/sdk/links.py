"""The Docker SDK for Python (from PyPI) against a berth daemon: legacy links and
volumes-from, as a user of containers.run sees them.

Usage: python3 links.py unix:///path/berth.sock FIXTURE_DIR
Exits non-zero with a message on the first expectation that does not hold.
"""
import sys

import docker


def expect(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def main():
    host, fixtures = sys.argv[1], sys.argv[2]
    c = docker.DockerClient(base_url=host)
    with open(f"{fixtures}/app-docker-save.tar", "rb") as f:
        c.images.load(f.read())

    # links={name: alias}: /etc/hosts and the link variables, inspect's Links.
    db = c.containers.run("fixture/app:1", ["sleep 300"], name="db", detach=True,
                          environment={"ROLE": "primary"}, ports={"6379/tcp": None})
    db.reload()
    ip = db.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    expect(ip, f"db address {db.attrs['NetworkSettings']}")
    app = c.containers.run("fixture/app:1", ["sleep 300"], name="app", detach=True,
                           links={"db": "cache"})
    code, out = app.exec_run(["sh", "-c", "cat /etc/hosts; env"])
    out = out.decode()
    expect(code == 0, f"exec {code} {out}")
    expect(f"{ip}\tcache {db.id[:12]} db\n" in out, f"hosts: {out}")
    for want in (f"CACHE_PORT=tcp://{ip}:6379", f"CACHE_PORT_6379_TCP_ADDR={ip}",
                 "CACHE_PORT_6379_TCP_PORT=6379", "CACHE_PORT_6379_TCP_PROTO=tcp",
                 "CACHE_NAME=/app/cache", "CACHE_ENV_ROLE=primary"):
        expect(want in out.splitlines(), f"{want} missing: {out}")
    app.reload()
    expect(app.attrs["HostConfig"]["Links"] == ["/db:/app/cache"], f"links {app.attrs['HostConfig']}")
    expect(not any(e.startswith("CACHE_") for e in app.attrs["Config"]["Env"]), "link env in Config.Env")
    # The link's name is among the target's Names, but the name filter matches a
    # container's own name only (Docker 20.10); removing the link keeps both containers.
    listed = c.api.containers(filters={"id": db.id})
    expect(sorted(listed[0]["Names"]) == ["/app/cache", "/db"], f"names {listed[0]['Names']}")
    listed = c.api.containers(filters={"name": "app/cache"})
    expect(listed == [], f"name filter on a link's name {listed}")
    c.api.remove_container("app/cache", link=True)
    app.reload()
    expect(app.attrs["HostConfig"]["Links"] is None, f"links after rm --link {app.attrs['HostConfig']}")
    expect(len(c.containers.list()) == 2, "rm --link removed a container")
    try:
        c.containers.create("fixture/app:1", ["true"], links={"missing": "m"})
        expect(False, "a link to a missing container was accepted")
    except docker.errors.APIError as e:
        expect(e.status_code == 400 and "could not get container for missing" in str(e), f"missing link {e}")

    # volumes_from: the source's volume and its content, read-only with :ro.
    src = c.containers.run("fixture/app:1", ["echo shared > /v/f"], detach=True,
                           volumes={"vf": {"bind": "/v", "mode": "rw"}})
    expect(src.wait()["StatusCode"] == 0, "source exit")
    ro = c.containers.run("fixture/app:1", ["cat /v/f; echo x > /v/x"], detach=True,
                          volumes_from=[f"{src.id}:ro"])
    expect(ro.wait()["StatusCode"] != 0, "write through volumes_from :ro succeeded")
    logs = ro.logs().decode()
    expect("shared" in logs and "Read-only file system" in logs, f"ro logs {logs}")
    ro.reload()
    expect(ro.attrs["HostConfig"]["VolumesFrom"] == [f"{src.id}:ro"], f"VolumesFrom {ro.attrs['HostConfig']}")
    mounts = ro.attrs["Mounts"]
    expect(len(mounts) == 1 and mounts[0]["Name"] == "vf" and mounts[0]["RW"] is False, f"mounts {mounts}")
    try:
        c.containers.create("fixture/app:1", ["true"], volumes_from=["nosuch"])
        expect(False, "volumes_from a missing container was accepted")
    except docker.errors.APIError as e:
        # Docker 20.10's answer: 400, not 404.
        expect(e.status_code == 400 and "No such container: nosuch" in str(e), f"missing source {e}")

    for x in c.containers.list(all=True):
        x.remove(force=True, v=True)
    print("ok")


if __name__ == "__main__":
    main()
