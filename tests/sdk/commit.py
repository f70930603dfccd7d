"""The Docker SDK for Python against a berth daemon: Container.commit (docker-py's own
integration checks: Container, ContainerConfig.Image, Parent; changes; a config body).

Usage: python3 commit.py unix:///path/berth.sock FIXTURES_DIR
Prints "ok"; exits non-zero with a message on the first expectation that does not hold.
"""
import sys

import docker


def expect(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def main():
    host, fixtures = sys.argv[1], sys.argv[2]
    # API 1.41 (Docker 20.10): inspect still has Container and ContainerConfig.
    c = docker.DockerClient(base_url=host, version="1.41")
    with open(f"{fixtures}/app-docker-save.tar", "rb") as f:
        c.images.load(f.read())
    base = c.images.get("fixture/app:1")
    ctr = c.containers.run(
        "fixture/app:1", ["-c", "echo from-sdk > /sdk.txt"], entrypoint=["/bin/sh"],
        detach=True,
    )
    ctr.wait()
    img = ctr.commit(repository="sdk/img", tag="1", message="via sdk", author="py",
                     changes=["EXPOSE 8000", 'CMD ["cat", "/sdk.txt"]'])
    expect(img.tags == ["sdk/img:1"], f"tags {img.tags}")
    a = img.attrs
    expect(a["Container"].startswith(ctr.id), f"Container {a['Container']}")
    expect(a["ContainerConfig"]["Image"] == "fixture/app:1", f"ContainerConfig {a['ContainerConfig']}")
    expect(a["Parent"] == base.id, f"Parent {a['Parent']} != {base.id}")
    expect(a["Author"] == "py", f"Author {a['Author']}")
    expect("8000/tcp" in a["Config"]["ExposedPorts"], f"ports {a['Config']['ExposedPorts']}")
    expect(a["Config"]["Cmd"] == ["cat", "/sdk.txt"], f"cmd {a['Config']['Cmd']}")
    hist = img.history()
    expect(hist[0]["Comment"] == "via sdk", f"history {hist[0]}")
    out = c.containers.run("sdk/img:1", entrypoint=[], remove=True)
    expect(out == b"from-sdk\n", f"run output {out!r}")
    # A config body: its Env over the container's, the rest filled from the container.
    img2 = ctr.commit(conf={"Env": ["EXTRA=1"], "Labels": {"by": "sdk"}}, pause=False)
    cfg = img2.attrs["Config"]
    expect("EXTRA=1" in cfg["Env"], f"env {cfg['Env']}")
    expect(any(e.startswith("PATH=") or e.startswith("GREETING=") for e in cfg["Env"]),
           f"container env merged: {cfg['Env']}")
    expect(cfg["Labels"].get("by") == "sdk" and cfg["Labels"].get("team") == "platform",
           f"labels {cfg['Labels']}")
    expect(img2.tags == [], f"untagged: {img2.tags}")
    # Unknown container.
    try:
        c.api.commit("nope")
        expect(False, "commit of a missing container succeeded")
    except docker.errors.NotFound:
        pass
    ctr.remove()
    print("ok")


if __name__ == "__main__":
    main()
