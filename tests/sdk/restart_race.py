"""The Docker SDK for Python against a berth daemon: a stop while the restart policy is
waiting out its delay or restarting returns only once the container stays stopped; a
forced remove at any point of that cycle removes it (never 409 "is not running" from a
container that exited between the remove's check and its kill).

Usage: python3 restart_race.py unix:///path/berth.sock FIXTURES_DIR
"""
import sys
import time

import docker


def expect(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def main():
    host, fixtures = sys.argv[1], sys.argv[2]
    c = docker.DockerClient(base_url=host)
    with open(f"{fixtures}/app-docker-save.tar", "rb") as f:
        c.images.load(f.read())
    for i in range(5):
        ctr = c.containers.run(
            "fixture/app:1", ["-c", "exit 3"], entrypoint=["/bin/sh"], detach=True,
            restart_policy={"Name": "always"}, name=f"race{i}",
        )
        # Stop at a different point of the exit / delay / restart cycle each time.
        time.sleep(0.05 * i)
        ctr.stop(timeout=1)
        ctr.reload()
        expect(ctr.status == "exited", f"race{i}: {ctr.status} right after stop")
        time.sleep(0.6)
        ctr.reload()
        expect(ctr.status == "exited", f"race{i}: {ctr.status} 0.6 s after stop (restarted)")
        ctr.remove(force=True)
    # rm -f at many points of the exit / delay / restart cycle: always gone, no error.
    for i in range(12):
        ctr = c.containers.run(
            "fixture/app:1", ["-c", "exit 3"], entrypoint=["/bin/sh"], detach=True,
            restart_policy={"Name": "always"}, name=f"rmrace{i}",
        )
        time.sleep(0.03 * i)
        try:
            ctr.remove(force=True)
        except docker.errors.APIError as e:
            sys.exit(f"FAIL: rmrace{i}: rm -f during the restart cycle: {e}")
        try:
            c.containers.get(f"rmrace{i}")
            sys.exit(f"FAIL: rmrace{i}: still there after rm -f")
        except docker.errors.NotFound:
            pass
    print("ok")


if __name__ == "__main__":
    main()
