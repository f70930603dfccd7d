"""The Docker SDK for Python (from PyPI) against a berth daemon: images end to end.

Usage: python3 images.py unix:///path/berth.sock FIXTURE_DIR
Exits non-zero with a message on the first expectation that does not hold.
"""
import sys

import docker

FIXTURE_ID = "sha256:60531c6e24d2ccf57ee55d41b3db84e938c346a60152ca51b33b63721094a617"


def expect(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def main():
    host, fixtures = sys.argv[1], sys.argv[2]
    c = docker.DockerClient(base_url=host)
    expect(c.ping(), "ping")
    expect(c.version()["ApiVersion"] >= "1.41", "API version")
    with open(f"{fixtures}/app-docker-save.tar", "rb") as f:
        loaded = c.images.load(f.read())
    expect([i.id for i in loaded] == [FIXTURE_ID], f"load gave {[i.id for i in loaded]}")
    img = c.images.get("fixture/app:1")
    expect(img.id == FIXTURE_ID, "get by tag")
    expect(img.labels.get("team") == "platform", f"labels {img.labels}")
    hc = img.attrs["Config"]["Healthcheck"]
    expect(hc["Test"] == ["CMD", "/bin/cat", "/srv/app/hello.txt"] and hc["Retries"] == 2, f"healthcheck {hc}")
    expect(len(img.history()) == 9, "history rows")
    expect(img.tag("sdk/app", "2"), "tag")
    tags = sorted(t for i in c.images.list() for t in i.tags)
    expect(tags == ["fixture/app:1", "sdk/app:2"], f"list {tags}")
    expect(len(c.images.list(filters={"label": "team=platform"})) == 1, "label filter")
    expect(c.images.list(filters={"label": "team=nobody"}) == [], "label filter excludes")
    saved = b"".join(img.save(named=True))
    c.images.remove("sdk/app:2")
    c.images.remove("fixture/app:1")
    expect(c.images.list() == [], "remove")
    again = c.images.load(saved)
    expect([i.id for i in again] == [FIXTURE_ID], "reload what the SDK saved")
    expect(c.df()["LayersSize"] > 0, "df")
    pruned = c.images.prune(filters={"dangling": False})
    expect({"Deleted": FIXTURE_ID} in (pruned["ImagesDeleted"] or []), f"prune {pruned}")
    try:
        c.images.get("nope:1")
        expect(False, "missing image found")
    except docker.errors.ImageNotFound as e:
        expect("No such image: nope:1" in str(e), f"not-found message {e}")
    print("ok")


if __name__ == "__main__":
    main()
