#!/usr/bin/env python3
"""Writes the build contexts of bench/build.sh, deterministically (same bytes every run).

    make-context.py multi DIR [--sources 20] [--source-size 1024]
    make-context.py files DIR [--dirs 200] [--per-dir 100] [--size 100]

multi: DIR/Dockerfile (a copy of bench/build/multi.Dockerfile) and DIR/src/module-NN.txt.
files: DIR/Dockerfile (bench/build/files.Dockerfile) and DIR/files/dDDD/fFFF.txt, DIRS x
PER_DIR files of SIZE bytes each.
Every file is one line of text derived from its name (the name, then a sha256 chain in hex,
cut to SIZE bytes with the newline), every mtime is fixed; DIR is emptied first. Standard
library only.
"""
import argparse
import hashlib
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MTIME = 1764115200  # 2025-11-26 00:00 UTC


def content(name: str, size: int) -> bytes:
    """SIZE bytes of text from NAME: 'NAME ' then hex digits, newline-terminated."""
    out = bytearray((name + " ").encode())
    seed = name.encode()
    while len(out) < size:
        seed = hashlib.sha256(seed).digest()
        out += seed.hex().encode()
    out = out[: max(size - 1, 0)] + b"\n"
    return bytes(out[:size])


def write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (MTIME, MTIME))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=("multi", "files"))
    ap.add_argument("dir")
    ap.add_argument("--sources", type=int, default=20, help="multi: source files")
    ap.add_argument("--source-size", type=int, default=1024, help="multi: bytes per source file")
    ap.add_argument("--dirs", type=int, default=200, help="files: directories")
    ap.add_argument("--per-dir", type=int, default=100, help="files: files per directory")
    ap.add_argument("--size", type=int, default=100, help="files: bytes per file")
    a = ap.parse_args()

    if os.path.exists(a.dir):
        shutil.rmtree(a.dir)
    os.makedirs(a.dir)
    shutil.copyfile(os.path.join(HERE, a.kind + ".Dockerfile"), os.path.join(a.dir, "Dockerfile"))
    os.utime(os.path.join(a.dir, "Dockerfile"), (MTIME, MTIME))
    n = 0
    if a.kind == "multi":
        for i in range(a.sources):
            write(os.path.join(a.dir, "src", "module-%02d.txt" % i), content("module-%02d" % i, a.source_size))
            n += 1
    else:
        for d in range(a.dirs):
            for f in range(a.per_dir):
                name = "d%03d/f%03d.txt" % (d, f)
                write(os.path.join(a.dir, "files", name), content(name, a.size))
                n += 1
    for root, dirs, _ in os.walk(a.dir, topdown=False):
        for d in dirs:
            os.utime(os.path.join(root, d), (MTIME, MTIME))
    print("%s: %d files in %s" % (a.kind, n, a.dir), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
