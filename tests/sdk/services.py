"""The Docker SDK for Python against a berth daemon: a swarm of one, a replicated service
with a health check converges to healthy tasks, scales, updates through every slot with
start-first order, rolls back on demand, and goes with its tasks when removed; secrets
and configs reach a service's task as files.

Usage: python3 services.py unix:///path/berth.sock FIXTURES_DIR
"""
import sys
import time

import docker
from _engine import ON_DOCKER
from docker.types import EndpointSpec, Healthcheck, RestartPolicy, ServiceMode, UpdateConfig


def expect(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def eventually(what, f, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if f():
                return
        except docker.errors.NotFound:
            # A task listed, its container gone before it was read (an update or a
            # replacement in between): not yet.
            pass
        time.sleep(0.2)
    sys.exit(f"FAIL: {what}: not reached in {timeout} s")


def running(svc):
    return [t for t in svc.tasks(filters={"desired-state": "running"})
            if t["Status"]["State"] == "running"]


def main():
    host, fixtures = sys.argv[1], sys.argv[2]
    c = docker.DockerClient(base_url=host)
    with open(f"{fixtures}/app-docker-save.tar", "rb") as f:
        c.images.load(f.read())
    c.swarm.init(advertise_addr="127.0.0.1")
    try:
        svc = c.services.create(
            "fixture/app:1",
            command=["sh", "-c", "sleep 1000"],
            name="api",
            mode=ServiceMode("replicated", replicas=2),
            restart_policy=RestartPolicy(condition="any", delay=200_000_000),
            # A 20 s timeout: the image's 1 s is too short for a probe on a loaded host
            # (a task replaced as unhealthy would break the counts below).
            healthcheck=Healthcheck(test=["CMD", "true"], interval=200_000_000,
                                    timeout=20_000_000_000),
            update_config=UpdateConfig(parallelism=1, order="start-first", monitor=1_000_000_000),
            stop_grace_period=1_000_000_000,
            labels={"team": "a"},
        )
        eventually("two running tasks", lambda: len(running(svc)) == 2)
        svc.reload()
        expect(svc.name == "api", f"name {svc.name}")
        expect(svc.attrs["Spec"]["Labels"] == {"team": "a"}, f"labels {svc.attrs['Spec']['Labels']}")
        expect(svc.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 2, f"mode {svc.attrs['Spec']['Mode']}")
        expect(len(c.services.list(filters={"name": "api"})) == 1, "services.list by name")
        labels = []

        def labelled():
            tasks = running(svc)
            labels[:] = [c.containers.get(t["Status"]["ContainerStatus"]["ContainerID"]).labels
                         for t in tasks]
            return len(tasks) == 2
        eventually("the running tasks' containers read", labelled)
        expect(all(lb.get("com.docker.swarm.service.id") == svc.id for lb in labels),
               f"labels {labels}")
        # The tasks' health checks run (the containers report healthy).
        eventually("healthy tasks", lambda: all(
            c.containers.get(t["Status"]["ContainerStatus"]["ContainerID"]).attrs["State"]
            .get("Health", {}).get("Status") == "healthy" for t in running(svc)))

        svc.scale(3)
        eventually("three running tasks", lambda: len(running(svc)) == 3)

        # start-first: the new task of a slot runs before the old one stops, so at least
        # three tasks run at every moment of the update.
        svc.reload()
        svc.update(command=["sh", "-c", "sleep 999"])
        least = 3
        deadline = time.time() + 60
        while time.time() < deadline:
            svc.reload()
            least = min(least, len(running(svc)))
            st = svc.attrs.get("UpdateStatus", {}).get("State")
            if st == "completed":
                break
            time.sleep(0.1)
        expect(svc.attrs.get("UpdateStatus", {}).get("State") == "completed",
               f"update status {svc.attrs.get('UpdateStatus')}")
        expect(least >= 3, f"only {least} tasks ran during a start-first update")
        cmds = sorted(
            c.containers.get(t["Status"]["ContainerStatus"]["ContainerID"]).attrs["Config"]["Entrypoint"][-1]
            for t in running(svc))
        expect(cmds == ["sleep 999"] * 3, f"commands after the update {cmds}")

        # Rollback on demand: Docker's update with rollback=previous (what `docker service
        # rollback` sends; the SDK has no call for it).
        svc.reload()
        c.api._raise_for_status(c.api._post_json(
            c.api._url("/services/{0}/update", svc.id), data=svc.attrs["Spec"],
            params={"version": svc.version, "rollback": "previous"}))
        eventually("rolled back", lambda: sorted(
            c.containers.get(t["Status"]["ContainerStatus"]["ContainerID"]).attrs["Config"]["Entrypoint"][-1]
            for t in running(svc)) == ["sleep 1000"] * 3)
        def rollback_done():
            svc.reload()
            return svc.attrs.get("UpdateStatus", {}).get("State") == "rollback_completed"
        eventually("rollback completed", rollback_done)
        expect(svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Command"][-1] == "sleep 1000",
               f"spec after rollback {svc.attrs['Spec']['TaskTemplate']['ContainerSpec']}")

        # berth's extension (Docker has none): the revisions kept, and a rollback to one
        # by number (here back to the update's revision 2).
        if not ON_DOCKER:
            svc.reload()
            revs = svc.attrs["Revisions"]
            expect([r["Number"] for r in revs] == [1, 2] and svc.attrs["Revision"] == 1,
                   f"revisions {revs} current {svc.attrs.get('Revision')}")
            expect(all(r["ImageID"].startswith("sha256:") for r in revs), f"revisions {revs}")

            def rollback_to(n):
                svc.reload()
                c.api._raise_for_status(c.api._post_json(
                    c.api._url("/services/{0}/update", svc.id), data=svc.attrs["Spec"],
                    params={"version": svc.version, "rollback": str(n)}))
            for bad, words in [(7, "revision 7 is not kept"), (1, "revision 1 is the current one")]:
                try:
                    rollback_to(bad)
                    sys.exit(f"FAIL: rollback to {bad} worked")
                except docker.errors.APIError as e:
                    expect(words in str(e), f"message {e}")
            rollback_to(2)
            eventually("rolled back to revision 2", lambda: sorted(
                c.containers.get(t["Status"]["ContainerStatus"]["ContainerID"]).attrs["Config"]["Entrypoint"][-1]
                for t in running(svc)) == ["sleep 999"] * 3)
            eventually("rollback to 2 completed", rollback_done)

        # An out-of-sequence update is refused (Docker's optimistic concurrency).
        try:
            c.api.update_service(svc.id, 1, task_template=svc.attrs["Spec"]["TaskTemplate"],
                                 name="api", fetch_current_spec=False)
            sys.exit("FAIL: an update with an old version worked")
        except docker.errors.APIError as e:
            expect("out of sequence" in str(e), f"message {e}")

        svc.remove()
        # (The low-level list: the SDK's containers.list inspects each container it
        # listed, and one removed in between fails it.)
        eventually("the tasks removed", lambda: not c.api.containers(
            all=True, filters={"label": "com.docker.swarm.service.name=api"}))
        expect(c.services.list() == [], "services after remove")

        # Secrets and configs: created, listed and inspected through the SDK (a secret's
        # value never comes back, a config's does), given to a service's task as files.
        sec = c.secrets.create(name="token", data=b"t0ken-abc", labels={"k": "v"})
        expect([x.name for x in c.secrets.list(filters={"label": "k=v"})] == ["token"],
               "secrets.list by label")
        expect("Data" not in c.secrets.get(sec.id).attrs["Spec"], "a secret's value came back")
        conf = c.configs.create(name="conf", data=b"x=1\n")
        expect(c.configs.get("conf").attrs["Spec"]["Data"] == "eD0xCg==",
               f"config data {c.configs.get('conf').attrs['Spec']}")
        from docker.types import ConfigReference, SecretReference
        with_files = c.services.create(
            "fixture/app:1", command=["sh", "-c", "sleep 1000"], name="files",
            # Not about health: a task replaced after a probe timed out would be gone
            # under the exec below.
            healthcheck=Healthcheck(test=["NONE"]),
            secrets=[SecretReference(sec.id, "token", filename="tok", mode=0o400)],
            configs=[ConfigReference(conf.id, "conf", filename="/etc/conf")],
            stop_grace_period=1_000_000_000)
        eventually("the files task runs", lambda: len(running(with_files)) == 1)
        cid = running(with_files)[0]["Status"]["ContainerStatus"]["ContainerID"]
        out = c.containers.get(cid).exec_run(
            ["sh", "-c", "cat /run/secrets/tok; stat -c %a /run/secrets/tok; cat /etc/conf"])
        expect(out.output == b"t0ken-abc400\nx=1\n", f"task files {out}")
        try:
            sec.remove()
            sys.exit("FAIL: a secret in use was removed")
        except docker.errors.APIError as e:
            expect("in use by the following service: files" in str(e), f"message {e}")
        with_files.remove()
        eventually("the files task removed", lambda: not c.api.containers(
            all=True, filters={"label": "com.docker.swarm.service.name=files"}))
        sec.remove()
        conf.remove()
        expect(c.secrets.list() == [] and c.configs.list() == [], "secrets and configs removed")
    finally:
        c.swarm.leave(force=True)
    print("ok")


if __name__ == "__main__":
    main()
