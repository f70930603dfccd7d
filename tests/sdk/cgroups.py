"""The Docker SDK for Python against a berth daemon: stats, top, update, pause.

Usage: python3 cgroups.py unix:///path/berth.sock FIXTURE_DIR
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
    # No health check: the image's probes are execs, and `top` would list one.
    ctr = c.containers.run(
        "fixture/app:1",
        ["sleep 1000"],
        detach=True,
        name="sdk-cg",
        mem_limit="48m",
        healthcheck={"test": ["NONE"]},
    )
    try:
        s = ctr.stats(stream=False)
        expect(s["name"] == "/sdk-cg", f"stats name {s.get('name')}")
        expect(s["id"] == ctr.id, "stats id")
        expect(s["memory_stats"]["limit"] == 48 * 1024 * 1024, f"memory limit {s['memory_stats']}")
        expect(s["memory_stats"]["usage"] > 0, f"memory usage {s['memory_stats']}")
        expect(s["pids_stats"]["current"] >= 1, f"pids {s['pids_stats']}")
        cpu = s["cpu_stats"]
        expect(cpu["cpu_usage"]["total_usage"] > 0, f"cpu usage {cpu}")
        expect(cpu["system_cpu_usage"] > s["precpu_stats"].get("system_cpu_usage", 0), "two samples")
        expect(cpu["online_cpus"] >= 1, f"online cpus {cpu}")

        top = ctr.top()
        expect("PID" in top["Titles"], f"top titles {top['Titles']}")
        cmd = top["Titles"].index("CMD")
        rows = [p[cmd] for p in top["Processes"]]
        expect(rows == ["sleep 1000"], f"top rows {rows}")

        ctr.update(mem_limit="64m", memswap_limit="128m")
        ctr.reload()
        expect(ctr.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024, "updated memory in inspect")

        ctr.pause()
        ctr.reload()
        expect(ctr.status == "paused", f"status {ctr.status}")
        ctr.unpause()
        ctr.reload()
        expect(ctr.status == "running", f"status {ctr.status}")
    finally:
        ctr.remove(force=True)
    print("ok")


if __name__ == "__main__":
    main()
