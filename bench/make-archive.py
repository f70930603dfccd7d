#!/usr/bin/env python3
"""Write a `docker save` archive for the image-load benchmark, without Docker.

The archive has the legacy layout that Docker 20.10's `docker save` writes:

    <layerid>/VERSION        "1.0"
    <layerid>/json           legacy v1 image JSON
    <layerid>/layer.tar      uncompressed layer
    <config-hex>.json        image config; its sha256 is the image ID
    repositories             {"bench/load": {"1": "<top layer id>"}}
    manifest.json            written last in the archive

and five uncompressed layers:

    1. a busybox rootfs (static /bin/busybox from Debian's busybox-static,
       applet symlinks, /tmp, /etc/passwd, /etc/group)
    2-4. one file each of --big-mb MiB of incompressible bytes (/data/blobN.bin)
    5. --small-files small files (1-3 KiB by default) over --dirs directories

Layer tars are streamed to a temporary directory next to the output file while
their sha256 (the diff_id) is computed, then copied into the outer tar. The
output is written to PATH.partial and renamed to PATH when complete.

Stdlib only (Python 3.11).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import sys
import tarfile
import tempfile
import time

MTIME = 1700000000  # 2023-11-14T22:13:20Z, fixed for all layer entries
CREATED = "2023-11-14T22:13:20Z"
CHUNK = 1 << 20
APPLETS = ("sh", "true", "cat", "echo", "ls", "sleep")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class HashingWriter(io.RawIOBase):
    """Write-only file that hashes and counts everything written to it."""

    def __init__(self, f):
        super().__init__()
        self._f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._f.write(b)
        self.sha.update(b)
        n = len(b)
        self.size += n
        return n


class RandomReader:
    """Read-only file of `size` random bytes, produced chunk by chunk."""

    def __init__(self, size: int, rng: random.Random | None):
        self._left = size
        self._rng = rng

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self._left:
            n = self._left
        n = min(n, CHUNK)
        self._left -= n
        if n == 0:
            return b""
        return self._rng.randbytes(n) if self._rng else os.urandom(n)


def entry(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644,
          size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = linkname
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mtime = MTIME
    return ti


def dir_entry(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    return entry(name, tarfile.DIRTYPE, mode)


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    tar.addfile(entry(name, mode=mode, size=len(data)), io.BytesIO(data))


class Layer:
    def __init__(self, path: str, diff_id: str, size: int, comment: str):
        self.path = path
        self.diff_id = diff_id  # "sha256:<hex>"
        self.size = size
        self.comment = comment


def write_layer(tmpdir: str, index: int, comment: str, fill) -> Layer:
    """Stream a layer tar to tmpdir, hashing it; `fill(tar)` adds the entries."""
    path = os.path.join(tmpdir, f"layer{index}.tar")
    t0 = time.monotonic()
    with open(path, "wb") as raw:
        hw = HashingWriter(raw)
        buf = io.BufferedWriter(hw, buffer_size=CHUNK)
        with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT,
                          bufsize=CHUNK) as tar:
            fill(tar)
        buf.flush()
    layer = Layer(path, "sha256:" + hw.sha.hexdigest(), hw.size, comment)
    log(f"  layer {index}: {hw.size / 1e6:8.1f} MB  {layer.diff_id}  "
        f"({time.monotonic() - t0:.1f}s)  {comment}")
    return layer


def fill_busybox(busybox: str):
    def fill(tar: tarfile.TarFile) -> None:
        for d in ("bin", "dev", "etc", "proc", "sys"):
            tar.addfile(dir_entry(d))
        tar.addfile(dir_entry("tmp", 0o1777))
        add_bytes(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                  b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        add_bytes(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        st = os.stat(busybox)
        with open(busybox, "rb") as f:
            tar.addfile(entry("bin/busybox", mode=0o755, size=st.st_size), f)
        for applet in APPLETS:
            tar.addfile(entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777,
                              linkname="busybox"))
    return fill


def fill_blob(n: int, size: int, rng: random.Random | None):
    def fill(tar: tarfile.TarFile) -> None:
        tar.addfile(dir_entry("data"))
        tar.addfile(entry(f"data/blob{n}.bin", size=size), RandomReader(size, rng))
    return fill


def fill_small(count: int, dirs: int, lo: int, hi: int, rng: random.Random | None):
    def fill(tar: tarfile.TarFile) -> None:
        sizes = random.Random(rng.random() if rng else None)
        tar.addfile(dir_entry("data"))
        tar.addfile(dir_entry("data/small"))
        for d in range(dirs):
            tar.addfile(dir_entry(f"data/small/d{d:03d}"))
        # Round-robin over the directories, in directory order in the tar.
        per_dir = [count // dirs + (1 if d < count % dirs else 0) for d in range(dirs)]
        i = 0
        for d, k in enumerate(per_dir):
            for _ in range(k):
                size = sizes.randint(lo, hi)
                data = rng.randbytes(size) if rng else os.urandom(size)
                add_bytes(tar, f"data/small/d{d:03d}/f{i:06d}.bin", data)
                i += 1
    return fill


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def container_config(cmd=None, env=None) -> dict:
    return {
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": env, "Cmd": cmd, "Image": "", "Volumes": None,
        "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
    }


def build_config(layers: list[Layer]) -> bytes:
    cfg = container_config(cmd=["sh"], env=[PATH_ENV])
    config = {
        "architecture": "amd64",
        "config": cfg,
        "container_config": container_config(
            cmd=["/bin/sh", "-c", "#(nop) ", 'CMD ["sh"]'], env=[PATH_ENV]),
        "created": CREATED,
        "docker_version": "20.10.24+dfsg1",
        "history": [{"created": CREATED, "created_by": f"/bin/sh -c #(nop) {l.comment}"}
                    for l in layers],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]},
    }
    return compact(config)


def v1_layer_json(layers: list[Layer], config: bytes) -> list[tuple[str, bytes]]:
    """Legacy <layerid>/json files and ids, computed the way Docker's
    v1.CreateID does: sha256 of the v1 JSON plus layer_id (the chain ID) and
    parent. The top layer carries the image's config, as Docker writes it."""
    full = json.loads(config)
    out: list[tuple[str, bytes]] = []
    chain = ""
    parent = ""
    for i, layer in enumerate(layers):
        chain = layer.diff_id if not chain else "sha256:" + hashlib.sha256(
            f"{chain} {layer.diff_id}".encode()).hexdigest()
        top = i == len(layers) - 1
        v1: dict = {}
        if top:
            v1 = {
                "created": full["created"],
                "container_config": full["container_config"],
                "docker_version": full["docker_version"],
                "config": full["config"],
                "architecture": full["architecture"],
                "os": full["os"],
            }
        else:
            v1 = {"created": CREATED, "container_config": container_config(), "os": "linux"}
        keyed = dict(v1)
        keyed["layer_id"] = chain
        if parent:
            keyed["parent"] = "sha256:" + parent
        layer_id = hashlib.sha256(compact(dict(sorted(keyed.items())))).hexdigest()
        doc = {"id": layer_id}
        if parent:
            doc["parent"] = parent
        doc.update(v1)
        out.append((layer_id, compact(doc)))
        parent = layer_id
    return out


def add_file(tar: tarfile.TarFile, name: str, path: str, mtime: int) -> None:
    st = os.stat(path)
    ti = entry(name, size=st.st_size)
    ti.mtime = mtime
    with open(path, "rb") as f:
        tar.addfile(ti, f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="archive path to write")
    ap.add_argument("--small-files", type=int, default=50000)
    ap.add_argument("--dirs", type=int, default=50, help="directories for the small files")
    ap.add_argument("--small-size", default="1024-3072",
                    help="MIN-MAX bytes per small file (default 1024-3072)")
    ap.add_argument("--big-mb", type=int, default=100, help="MiB per big layer")
    ap.add_argument("--big-layers", type=int, default=3)
    ap.add_argument("--tag", default="bench/load:1")
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--seed", type=int, default=None,
                    help="deterministic content (default: os.urandom)")
    args = ap.parse_args()

    lo, hi = (int(x) for x in args.small_size.split("-", 1))
    if not 0 <= lo <= hi or args.dirs < 1 or args.small_files < 0:
        ap.error("bad --small-size/--dirs/--small-files")
    if ":" not in args.tag:
        ap.error("--tag must be REPO:TAG")
    if not os.path.isfile(args.busybox):
        ap.error(f"{args.busybox} not found (apt-get install busybox-static)")
    rng = random.Random(args.seed) if args.seed is not None else None

    out = os.path.abspath(args.out)
    outdir = os.path.dirname(out)
    os.makedirs(outdir, exist_ok=True)
    partial = out + ".partial"
    t0 = time.monotonic()
    log(f"writing {out}")
    with tempfile.TemporaryDirectory(prefix=".make-archive.", dir=outdir) as tmp:
        big = args.big_mb * 1024 * 1024
        specs = [("ADD busybox rootfs in / ", fill_busybox(args.busybox))]
        for n in range(1, args.big_layers + 1):
            specs.append((f"COPY blob{n}.bin ({args.big_mb} MiB random) in /data/ ",
                          fill_blob(n, big, rng)))
        specs.append((f"COPY {args.small_files} small files in /data/small/ ",
                      fill_small(args.small_files, args.dirs, lo, hi, rng)))
        layers = [write_layer(tmp, i + 1, c, f) for i, (c, f) in enumerate(specs)]

        config = build_config(layers)
        image_hex = hashlib.sha256(config).hexdigest()
        v1 = v1_layer_json(layers, config)
        repo, tag = args.tag.rsplit(":", 1)

        with open(partial, "wb") as raw, tarfile.open(
                fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar:
            created = MTIME
            for layer, (lid, ljson) in zip(layers, v1):
                d = dir_entry(lid)
                d.mtime = created
                tar.addfile(d)
                for name, data in (("VERSION", b"1.0"), ("json", ljson)):
                    ti = entry(f"{lid}/{name}", size=len(data))
                    ti.mtime = created
                    tar.addfile(ti, io.BytesIO(data))
                add_file(tar, f"{lid}/layer.tar", layer.path, created)
                os.unlink(layer.path)  # free the disk space early
            ti = entry(f"{image_hex}.json", size=len(config))
            ti.mtime = created
            tar.addfile(ti, io.BytesIO(config))
            repositories = compact({repo: {tag: v1[-1][0]}})
            tar.addfile(entry("repositories", size=len(repositories)),
                        io.BytesIO(repositories))
            manifest = compact([{
                "Config": f"{image_hex}.json",
                "RepoTags": [args.tag],
                "Layers": [f"{lid}/layer.tar" for lid, _ in v1],
            }])
            # Last, as the interesting case for a streaming loader.
            tar.addfile(entry("manifest.json", size=len(manifest)), io.BytesIO(manifest))
            raw.flush()
            os.fsync(raw.fileno())
    os.rename(partial, out)
    size = os.path.getsize(out)
    log(f"done in {time.monotonic() - t0:.1f}s")
    print(f"image_id sha256:{image_hex}")
    print(f"tag {args.tag}")
    print(f"size {size} ({size / 1e6:.1f} MB)")
    print(f"layers {' '.join(l.diff_id for l in layers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
