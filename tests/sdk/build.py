"""The Docker SDK for Python builds images against a berth daemon (issue 16):
`images.build` from a directory (the SDK makes the context tar and applies
.dockerignore), build args, labels, target, the log stream, the cache, and a failing
step raising BuildError with the step's output.

Usage: python3 build.py unix:///path/berth.sock FIXTURE_DIR
Exits non-zero with a message on the first expectation that does not hold.
"""
import os
import sys
import tempfile

import docker
import docker.errors


def expect(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def text(logs):
    return "".join(l.get("stream", "") for l in logs)


def main():
    host, fixtures = sys.argv[1], sys.argv[2]
    c = docker.DockerClient(base_url=host)
    with open(f"{fixtures}/app-docker-save.tar", "rb") as f:
        c.images.load(f.read())

    with tempfile.TemporaryDirectory() as ctx:
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(
                "FROM fixture/app:1 AS base\n"
                "ARG FLAVOUR=plain\n"
                "RUN echo \"flavour $FLAVOUR\" > /flavour\n"
                "FROM base AS final\n"
                "COPY app.txt /srv/app.txt\n"
                "ENV MODE=prod\n"
                # The fixture's ENTRYPOINT is /bin/sh -c: CMD is its script.
                "CMD [\"busybox cat /flavour /srv/app.txt\"]\n"
            )
        with open(os.path.join(ctx, "app.txt"), "w") as f:
            f.write("app v1\n")
        with open(os.path.join(ctx, "skip.me"), "w") as f:
            f.write("x\n")
        with open(os.path.join(ctx, ".dockerignore"), "w") as f:
            f.write("skip.me\n")

        image, logs = c.images.build(path=ctx, tag="sdk-built:1",
                                     buildargs={"FLAVOUR": "spicy"},
                                     labels={"built.by": "sdk"}, rm=True)
        out = text(logs)
        expect("Successfully built" in out, f"log stream: {out}")
        expect("sdk-built:1" in image.tags, f"tags {image.tags}")
        expect(image.labels.get("built.by") == "sdk", f"labels {image.labels}")
        expect("MODE=prod" in image.attrs["Config"]["Env"], f"env {image.attrs['Config']['Env']}")
        run = c.containers.run("sdk-built:1", remove=True)
        expect(run == b"flavour spicy\napp v1\n", f"run output {run!r}")

        # Again: every step from the cache, the same image.
        again, logs = c.images.build(path=ctx, tag="sdk-built:1",
                                     buildargs={"FLAVOUR": "spicy"},
                                     labels={"built.by": "sdk"})
        expect(again.id == image.id, f"rebuild {again.id} != {image.id}")
        expect("Using cache" in text(logs), f"no cache: {text(logs)}")

        # target: the first stage only.
        base, _ = c.images.build(path=ctx, tag="sdk-built:base", target="base")
        out = c.containers.run("sdk-built:base", ["busybox cat /flavour"], remove=True)
        expect(out == b"flavour plain\n", f"target output {out!r}")

        # A failing step: BuildError carrying the step's output and Docker's words.
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write("FROM fixture/app:1\nRUN echo broken-step >&2; exit 7\n")
        try:
            c.images.build(path=ctx, tag="sdk-broken:1")
            sys.exit("FAIL: a failing RUN built")
        except docker.errors.BuildError as e:
            expect("returned a non-zero code: 7" in str(e), f"message {e}")
            expect("broken-step" in text(e.build_log), f"log {list(e.build_log)}")
        try:
            c.images.get("sdk-broken:1")
            sys.exit("FAIL: a failed build was tagged")
        except docker.errors.ImageNotFound:
            pass

        # A Dockerfile that does not parse: an API error naming the rule.
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write("FROM fixture/app:1\nNOPE x\n")
        try:
            c.images.build(path=ctx, tag="sdk-broken:2")
            sys.exit("FAIL: a broken Dockerfile built")
        except (docker.errors.APIError, docker.errors.BuildError) as e:
            expect("unknown instruction" in str(e).lower(), f"message {e}")
    print("ok")


if __name__ == "__main__":
    main()
