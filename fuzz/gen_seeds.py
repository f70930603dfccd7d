#!/usr/bin/env python3
"""Writes the seed corpora of the berth fuzz targets into fuzz/corpus/TARGET/.

Seeds are generated at run time (nothing binary is committed): the two archives of
/work/shared/fixtures (or $BERTH_FIXTURES) as they are, the members extracted from them,
and small synthetic archives, layers, JSON documents, references, change lines, DNS
queries, Dockerfiles and .dockerignore files.
Usage: gen_seeds.py [CORPUS_DIR]   (default: fuzz/corpus next to this script)
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
FIXTURES = os.environ.get("BERTH_FIXTURES") or os.path.join(
    os.path.dirname(os.path.dirname(HERE)), "shared", "fixtures"
)
if not os.path.isdir(FIXTURES):
    FIXTURES = "/work/shared/fixtures"


def sha(b):
    return hashlib.sha256(b).hexdigest()


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tar_bytes(members, fmt=tarfile.GNU_FORMAT):
    """members: list of (TarInfo, bytes-or-None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for ti, data in members:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def ti(name, kind=tarfile.REGTYPE, data=None, mode=0o644, **kw):
    t = tarfile.TarInfo(name)
    t.type = kind
    t.mode = mode
    t.mtime = 1700000000
    if data is not None:
        t.size = len(data)
    for k, v in kw.items():
        setattr(t, k, v)
    return (t, data)


def gz(b):
    return gzip.compress(b, mtime=0)


def zst(b):
    """zstd-compressed bytes via the zstd CLI, or None where it is missing."""
    import shutil
    import subprocess
    if not shutil.which("zstd"):
        return None
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=b, stdout=subprocess.PIPE, check=True).stdout


# ---------------------------------------------------------------- layers (unpack_layer)
def small_layer():
    return tar_bytes([
        ti("app/", tarfile.DIRTYPE, mode=0o755),
        ti("app/hello.txt", data=b"hello from a layer\n"),
        ti("app/link", tarfile.SYMTYPE, linkname="hello.txt"),
        ti("app/hard", tarfile.LNKTYPE, linkname="app/hello.txt"),
    ])


def layers():
    out = {}
    out["small"] = small_layer()
    out["all_types"] = tar_bytes([
        ti("./", tarfile.DIRTYPE, mode=0o755),
        ti("etc/", tarfile.DIRTYPE, mode=0o755),
        ti("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
        ti("bin/", tarfile.DIRTYPE),
        ti("bin/su", data=b"\x7fELF", mode=0o4755),
        ti("bin/sh", tarfile.SYMTYPE, linkname="/bin/busybox"),
        ti("bin/ln", tarfile.LNKTYPE, linkname="etc/passwd"),
        ti("dev/", tarfile.DIRTYPE),
        ti("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        ti("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        ti("dev/fifo", tarfile.FIFOTYPE),
        ti("removed", tarfile.CHRTYPE, devmajor=0, devminor=0),
        ti("etc/.wh.shadow", data=b""),
        ti("opt/", tarfile.DIRTYPE),
        ti("opt/.wh..wh..opq", data=b""),
        ti("home/user/", tarfile.DIRTYPE, uid=1000, gid=1000, mode=0o700),
        ti("home/user/file", data=b"x" * 1000, uid=1000, gid=1000),
    ])
    out["gnu_longname"] = tar_bytes([
        ti("d/" + "a" * 200 + "/", tarfile.DIRTYPE),
        ti("d/" + "a" * 200 + "/" + "b" * 150, data=b"long"),
        ti("d/l", tarfile.SYMTYPE, linkname="x" * 300),
    ], fmt=tarfile.GNU_FORMAT)
    out["pax_xattrs"] = tar_bytes([
        ti("x/", tarfile.DIRTYPE, pax_headers={"SCHILY.xattr.user.dir": "1"}),
        ti("x/f", data=b"data", pax_headers={
            "SCHILY.xattr.user.comment": "hi",
            "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00",
            "LIBARCHIVE.xattr.user.b64": "aGk=",
            "path": "x/renamed-by-pax",
            "mtime": "1700000000.5",
            "uid": "4294967294",
        }),
        ti("x/l", tarfile.SYMTYPE, linkname="f", pax_headers={"linkpath": "../../outside"}),
    ], fmt=tarfile.PAX_FORMAT)
    out["pax_sparse"] = tar_bytes([
        ti("s", data=b"abc", pax_headers={"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                                           "GNU.sparse.name": "s", "GNU.sparse.realsize": "100"}),
    ], fmt=tarfile.PAX_FORMAT)
    # Attempts to get out of the layer root, one per seed so each is reached.
    escapes = {
        "dotdot": [ti("../escape", data=b"no")],
        "absolute": [ti("/abs/file", data=b"abs")],
        "climb": [ti("a/", tarfile.DIRTYPE), ti("a/../../b", data=b"up")],
        "symlink_parent": [ti("lnk", tarfile.SYMTYPE, linkname="/"), ti("lnk/etc/x", data=b"through")],
        "symlink_parent_rel": [ti("sl", tarfile.SYMTYPE, linkname="../sentinel"), ti("sl/x", data=b"via")],
        "hardlink_out": [ti("hl", tarfile.LNKTYPE, linkname="../sentinel/x")],
        "hardlink_symlink": [ti("s", tarfile.SYMTYPE, linkname="/etc/passwd"), ti("h", tarfile.LNKTYPE, linkname="s")],
        "file_over_dir": [ti("dir/", tarfile.DIRTYPE), ti("dir/f", data=b"1"), ti("dir", data=b"file over dir")],
        "dir_over_symlink": [ti("d", tarfile.SYMTYPE, linkname=".."), ti("d/", tarfile.DIRTYPE), ti("d/x", data=b"1")],
        "whiteout_dotdot": [ti(".wh...", data=b"")],
        "whiteout_parent": [ti("a/", tarfile.DIRTYPE), ti("a/.wh...", data=b"")],
        "root_entry": [ti("./.", tarfile.DIRTYPE, mode=0o700), ti(".", data=b"file at root")],
        "hardlink_self": [ti("f", data=b"1"), ti("f", tarfile.LNKTYPE, linkname="f")],
        "hardlink_over_dir": [ti("d/", tarfile.DIRTYPE), ti("d/f", data=b"1"), ti("d", tarfile.LNKTYPE, linkname="d/f")],
        "opaque_xattr": [ti("o/", tarfile.DIRTYPE, pax_headers={"SCHILY.xattr.trusted.overlay.opaque": "y"})],
    }
    for name, entries in escapes.items():
        safe = [ti("ok/", tarfile.DIRTYPE), ti("ok/f", data=b"fine")]
        out["escape_" + name] = tar_bytes(safe + entries, fmt=tarfile.PAX_FORMAT)
    out["ustar_plain"] = tar_bytes([ti("a", data=b"1"), ti("b/", tarfile.DIRTYPE)], fmt=tarfile.USTAR_FORMAT)
    out["empty"] = b"\0" * 1024
    out["trailing"] = small_layer() + b"trailing garbage after the end marker"
    # GNU sparse (type 'S') header crafted by hand: 2 data blocks in a 1 MiB file.
    h = bytearray(512)
    h[0:6] = b"sparse"
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"00000002000\0"  # stored size 1024
    h[136:148] = b"14000000000\0"
    h[156:157] = b"S"
    h[257:265] = b"ustar  \0"
    # sparse map at 386: (offset, numbytes) x4, then isextended, realsize
    h[386:398] = b"00000000000\0"
    h[398:410] = b"00000001000\0"
    h[410:422] = b"00003777000\0"
    h[422:434] = b"00000001000\0"
    h[482:483] = b"\0"
    h[483:495] = b"00004000000\0"
    h[148:156] = b"        "
    chk = sum(h)
    h[148:156] = b"%06o\0 " % chk
    out["gnu_sparse"] = bytes(h) + b"A" * 512 + b"B" * 512 + b"\0" * 1024
    return out


# ---------------------------------------------------------------- archives (load_archive)
def config_for(diff_ids, extra=None):
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["A=1"], "Cmd": ["/bin/sh"], "WorkingDir": "/app",
                   "ExposedPorts": {"8080/tcp": {}}, "Labels": {"k": "v"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in diff_ids]},
        "history": [{"created_by": "x"}],
    }
    if extra:
        cfg.update(extra)
    return json.dumps(cfg, separators=(",", ":")).encode()


def docker_save(layer_blobs, diff_ids, tags=("fuzz/app:1",), symlink_dup=False):
    cfg = config_for(diff_ids)
    members = []
    names = []
    for i, blob in enumerate(layer_blobs):
        d = "%064x" % (i + 1)
        members.append(ti(d + "/", tarfile.DIRTYPE))
        members.append(ti(d + "/layer.tar", data=blob))
        names.append(d + "/layer.tar")
    if symlink_dup:
        members.append(ti("%064x/" % 99, tarfile.DIRTYPE))
        members.append(ti("%064x/layer.tar" % 99, tarfile.SYMTYPE, linkname="../%s" % names[0]))
        names.append("%064x/layer.tar" % 99)
        cfg = config_for(diff_ids + diff_ids[:1])
    members.append(ti(sha(cfg) + ".json", data=cfg))
    manifest = [{"Config": sha(cfg) + ".json", "RepoTags": list(tags), "Layers": names}]
    members.append(ti("manifest.json", data=json.dumps(manifest).encode()))
    return tar_bytes(members)


def oci_layout(layer_blobs, diff_ids, nested=False, ref="fuzz/app:2"):
    blobs = {}

    def add(b):
        blobs[sha(b)] = b
        return {"digest": "sha256:" + sha(b), "size": len(b)}

    cfg = config_for(diff_ids)
    cdesc = dict(mediaType="application/vnd.oci.image.config.v1+json", **add(cfg))
    def layer_type(b):
        if b[:2] == b"\x1f\x8b":
            return "application/vnd.oci.image.layer.v1.tar+gzip"
        if b[:4] == b"\x28\xb5\x2f\xfd":
            return "application/vnd.oci.image.layer.v1.tar+zstd"
        return "application/vnd.oci.image.layer.v1.tar"
    ldescs = [dict(mediaType=layer_type(b), **add(b)) for b in layer_blobs]
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": cdesc, "layers": ldescs}).encode()
    mdesc = dict(mediaType="application/vnd.oci.image.manifest.v1+json", **add(man))
    ann = {"org.opencontainers.image.ref.name": ref}
    if nested:
        other = json.dumps({"schemaVersion": 2, "config": cdesc, "layers": []}).encode()
        odesc = dict(mediaType="application/vnd.oci.image.manifest.v1+json", **add(other),
                     platform={"architecture": "arm64", "os": "linux", "variant": "v8"})
        idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": [dict(mdesc, platform={"architecture": "amd64", "os": "linux"}),
                                        odesc]}).encode()
        top = dict(mediaType="application/vnd.oci.image.index.v1+json", **add(idx), annotations=ann)
    else:
        top = dict(mdesc, annotations=ann)
    index = json.dumps({"schemaVersion": 2, "manifests": [top]}).encode()
    members = [ti("oci-layout", data=b'{"imageLayoutVersion":"1.0.0"}'), ti("index.json", data=index),
               ti("blobs/", tarfile.DIRTYPE), ti("blobs/sha256/", tarfile.DIRTYPE)]
    for h, b in blobs.items():
        members.append(ti("blobs/sha256/" + h, data=b))
    return tar_bytes(members), blobs


# ---------------------------------------------------------------- DNS queries (dns_query)
def dns_name(name):
    out = b""
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def dns_query(name, qtype=1, qclass=1, qid=0x1234, flags=0x0100, questions=None, edns=None,
              extra_answers=b"", ancount=0):
    """A DNS message (RFC 1035 4.1): header, questions, answers as given, an OPT record
    with payload size `edns` if set."""
    qs = questions if questions is not None else [(name, qtype, qclass)]
    body = b"".join(dns_name(n) + t.to_bytes(2, "big") + c.to_bytes(2, "big") for n, t, c in qs)
    arcount = 1 if edns is not None else 0
    head = b"".join(x.to_bytes(2, "big") for x in (qid, flags, len(qs), ancount, 0, arcount))
    opt = b""
    if edns is not None:
        opt = b"\0" + (41).to_bytes(2, "big") + edns.to_bytes(2, "big") + b"\0\0\0\0" + b"\0\0"
    return head + body + extra_answers + opt


def main():
    # unpack_layer
    ls = layers()
    for name, b in ls.items():
        put("unpack_layer", name + ".tar", b)
    docker_fx = os.path.join(FIXTURES, "app-docker-save.tar")
    oci_fx = os.path.join(FIXTURES, "app-oci-archive.tar")
    have_fx = os.path.isfile(docker_fx) and os.path.isfile(oci_fx)
    if have_fx:
        with tarfile.open(docker_fx) as t:
            for m in t.getmembers():
                if not m.isfile():
                    continue
                data = t.extractfile(m).read()
                base = m.name.replace("/", "_")
                if m.name.endswith("layer.tar"):
                    put("unpack_layer", "fixture_" + sha(data)[:12] + "_layer.tar", data)
                elif m.name.endswith(".json") or m.name.endswith("/json"):
                    put("image_json", "fixture_docker_" + base, data)
        with tarfile.open(oci_fx) as t:
            for m in t.getmembers():
                if not m.isfile():
                    continue
                data = t.extractfile(m).read()
                if data[:2] == b"\x1f\x8b":
                    layer = gzip.decompress(data)
                    put("unpack_layer", "fixture_" + sha(layer)[:12] + "_layer.tar", layer)
                elif data[:1] == b"{":
                    put("image_json", "fixture_oci_" + m.name.replace("/", "_"), data)
        for fx in (docker_fx, oci_fx):
            with open(fx, "rb") as f:
                put("load_archive", "fixture_" + os.path.basename(fx), f.read())
    else:
        print("gen_seeds: fixtures not found in %s; synthetic seeds only" % FIXTURES, file=sys.stderr)

    # load_archive
    l1, l2 = ls["small"], ls["ustar_plain"]
    put("load_archive", "docker_min.tar", docker_save([l1], [sha(l1)]))
    put("load_archive", "docker_two_layers.tar", docker_save([l1, l2], [sha(l1), sha(l2)], tags=("a:1", "b/c:2")))
    put("load_archive", "docker_gz_layer.tar", docker_save([gz(l1)], [sha(l1)]))
    put("load_archive", "docker_symlinked_layer.tar", docker_save([l1], [sha(l1)], symlink_dup=True))
    put("load_archive", "docker_min.tar.gz", gz(docker_save([l1], [sha(l1)])))
    put("load_archive", "docker_bad_diffid.tar", docker_save([l1], [sha(l2)]))
    if zst(b"") is not None:
        put("load_archive", "docker_zstd_layer.tar", docker_save([zst(l1)], [sha(l1)]))
        put("load_archive", "docker_min.tar.zst", zst(docker_save([l1], [sha(l1)])))
        oci, _ = oci_layout([zst(l1)], [sha(l1)])
        put("load_archive", "oci_zstd_layer.tar", oci)
    oci, _ = oci_layout([gz(l1)], [sha(l1)])
    put("load_archive", "oci_min.tar", oci)
    oci, _ = oci_layout([l1, gz(l2)], [sha(l1), sha(l2)], nested=True)
    put("load_archive", "oci_nested_index.tar", oci)
    put("load_archive", "oci_min.tar.gz", gz(oci))

    # image_json
    _, blobs = oci_layout([gz(l1)], [sha(l1)], nested=True)
    for h, b in blobs.items():
        if b[:1] == b"{":
            put("image_json", "synthetic_" + h[:12] + ".json", b)
    put("image_json", "config_full.json", config_for([sha(l1)], extra={
        "created": "2024-01-01T00:00:00Z", "author": "me", "docker_version": "20.10",
        "os.version": "10.0", "variant": "v8", "container_config": {"Hostname": "x"},
        "config": {"User": "1:1", "Healthcheck": {"Test": ["CMD", "true"], "Interval": 2000000000,
                   "Retries": 2}, "Volumes": {"/data": {}}, "StopSignal": "SIGTERM",
                   "OnBuild": [], "Shell": ["/bin/sh", "-c"], "ArgsEscaped": True,
                   "Image": "sha256:" + "0" * 64, "Float": 1.5}}))
    put("image_json", "docker_manifest.json", json.dumps(
        [{"Config": "a.json", "RepoTags": None, "Layers": ["l/layer.tar"]}]))

    # reference
    for i, r in enumerate([
        "busybox", "busybox:latest", "library/busybox", "docker.io/library/busybox:1.36",
        "fixture/app:1", "localhost:5000/team/app:v1.2", "localhost/app", "[::1]:5000/a/b",
        "reg.example.com/a/b/c@sha256:" + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "app:tag@sha256:" + "a" * 64, "a__b--c.d_e", "Upper/x", "a//b", "x" * 300,
    ]):
        put("reference", "ref%02d" % i, r)

    # registry_challenge
    for i, c in enumerate([
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
        'Basic realm="berth"', 'Bearer realm="http://127.0.0.1:5000/token",service="berth"',
        'Bearer realm=unquoted,service="a\\"b"', 'bearer  realm="x" , scope="a,b"', "Negotiate",
    ]):
        put("registry_challenge", "challenge%02d" % i, c)

    # changes
    for i, c in enumerate([
        'CMD ["/bin/app", "--serve"]', "ENTRYPOINT /bin/sh -c", 'ENV A=1 B="two words"',
        "ENV LEGACY value with spaces", "WORKDIR /srv", "USER 1000:1000", "EXPOSE 8080 53/udp 1000-1010/sctp",
        'LABEL team=platform "x y"=z', "STOPSIGNAL SIGINT", 'VOLUME ["/data", "/logs"]', "VOLUME /a /b",
        "ENV A=1\nENV A=2\nCMD echo $A", "RUN rm -rf /",
    ]):
        put("changes", "change%02d" % i, c)

    # dns_query: first byte = mode (bit 0 TCP, bit 1 stranger, bit 2 TCP stream of frames)
    A, PTR, AAAA, ANY, MX = 1, 12, 28, 255, 15
    queries = {
        "web_a": dns_query("web.", A),
        "web_upper_nodot": dns_query("WEB", A),
        "web_aaaa": dns_query("web.", AAAA),
        "web_any": dns_query("web.", ANY),
        "web_mx_chaos": dns_query("web.", MX, qclass=3),
        "empty_a": dns_query("empty.", A),
        "replicas_a": dns_query("replicas.", A),
        "replicas_edns_4096": dns_query("replicas.", A, edns=4096),
        "replicas_edns_600": dns_query("replicas.", A, edns=600),
        "ptr_known": dns_query("3.0.72.100.in-addr.arpa.", PTR),
        "ptr_unknown": dns_query("9.9.72.100.in-addr.arpa.", PTR),
        "ptr_net": dns_query("72.100.in-addr.arpa.", PTR),
        "outside_a": dns_query("example.com.", A),
        "search_domain": dns_query("web.example.com.", A),
        "root": dns_query(".", A),
        "two_questions": dns_query("", questions=[("web", A, 1), ("empty", A, 1)]),
        "no_question": dns_query("", questions=[]),
        "notify": dns_query("web.", 6, flags=0x2000),
        "response": dns_query("web.", A, flags=0x8100),
        "compressed_pointer": bytes.fromhex("12340100000200000000000003776562000001000" "1c00c00010001"),
    }
    for name, q in queries.items():
        put("dns_query", name + "_udp", b"\x00" + q)
        put("dns_query", name + "_tcp", b"\x01" + q)
    put("dns_query", "stranger_web_udp", b"\x02" + queries["web_a"])
    stream = b"".join(len(q).to_bytes(2, "big") + q for q in
                      (queries["web_a"], queries["replicas_a"], queries["ptr_known"]))
    put("dns_query", "tcp_stream_three", b"\x04" + stream)
    put("dns_query", "tcp_stream_cut", b"\x04" + stream[:-5])
    put("dns_query", "tcp_stream_empty_frame", b"\x04\x00\x00" + stream)

    # dockerfile: whole Dockerfiles
    dockerfiles = {
        "multistage": """# syntax=docker/dockerfile:1
ARG GO_VERSION=1.22
ARG BASE=${REGISTRY:-docker.io}/library/alpine:3.19
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY --link go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app ./cmd/app

FROM ${BASE} as Runtime
LABEL org.opencontainers.image.title="app" \\
      org.opencontainers.image.version="${VERSION:-dev}" maintainer='me <me@x>'
COPY --from=build --chown=1000:1000 --chmod=0755 /out/app /usr/local/bin/app
ENV PATH=/usr/local/bin:$PATH APP_HOME="/var/lib/app" LEGACY_FORM=no
ENV OLD value with spaces
EXPOSE 8080/tcp 53/udp 9000-9010
VOLUME ["/data", "/logs"]
USER 1000:1000
HEALTHCHECK --interval=30s --timeout=3s --start-period=1m30s --retries=3 CMD wget -q -O- http://localhost:8080/health || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["--serve", "--port=8080"]
""",
        "heredocs": """FROM debian:bookworm-slim
RUN <<EOF
set -eux
apt-get update
apt-get install -y --no-install-recommends ca-certificates
EOF
RUN <<-'SCRIPT' bash
\techo "no $EXPANSION here"
\tSCRIPT
COPY <<CONF /etc/app.conf
name=${NAME:-app}
home=$HOME
CONF
COPY <<"A" <<B /etc/
literal $A
A
expanded ${B:+yes}
B
RUN python3 <<PY > /out.txt && cat /out.txt
print("hi")
PY
RUN 3<<EOF cat /dev/fd/3
three
EOF
""",
        "escape_backtick": """# escape=`
FROM mcr.microsoft.com/windows/servercore:ltsc2022
SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop';"]
WORKDIR C:\\app
COPY . C:\\app\\
RUN Write-Host `
    'line one' `
    # a comment inside the continuation
    'line two'
ENV DIR=C:\\data X="a`"b"
ONBUILD COPY . C:\\onbuild\\
""",
        "modifiers": """ARG A=1 B="two words" C
FROM alpine:${TAG:-latest}
ARG VERSION=v1.2.3
ENV FILE=app-${VERSION#v}.tar.gz DIR=${HOME%/*} BASE=${FILE%%.*} \\
    STRIPPED=${FILE##*-} R1=${FILE/app/lib} R2=${FILE//./_} REQ=${VERSION:?version_required} \\
    ALT=${C:+set} OR=${C-unset} Q='${single}' DQ="${A} \\"quoted\\" \\$literal"
WORKDIR /opt/${BASE:-x}
RUN echo $A ${B} "$C" '$D' \\$E && echo ${#} $1 $@
USER ${USER:-nobody}:${GROUP:-nogroup}
LABEL "key with space"="value" multi.line="a\\
b"
""",
        "onbuild": """FROM node:20 AS base
ONBUILD ARG NODE_ENV=production
ONBUILD COPY package*.json ./
ONBUILD RUN npm ci --omit=dev
ONBUILD RUN <<EOF
echo onbuild heredoc
EOF
ONBUILD ENV A=1 B=$A
ONBUILD WORKDIR /app
ONBUILD HEALTHCHECK NONE
FROM base
CMD node server.js
""",
        "odd": """\ufeff# directive=ignored
FROM scratch
# comment

ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 --keep-git-dir=true https://example.com/a.tgz /
ADD --exclude=*.md --exclude=docs/ . /src
COPY --parents --exclude=x ["a b", "c", "/dst/"]
RUN --network=none --security=sandbox ["sh", "-c", "echo $HOME"]
CMD
ENTRYPOINT sh -c 'exec "$@"' --
MAINTAINER someone
HEALTHCHECK --interval=1.5h --retries=+2 CMD ["true"]
EXPOSE 80 443
""",
    }
    for name, text in dockerfiles.items():
        put("dockerfile", name, text)

    # dockerignore: the patterns, then NUL and the paths to match, one a line (without a
    # NUL the target matches a few fixed paths)
    ignores = {
        "typical": ("# comment\n.git\nnode_modules\n**/*.log\n*.md\n!README.md\n/build/\ntmp*\n"
                    "!tmp/keep\n**/.DS_Store\n",
                    "README.md\nx.md\nnode_modules/a/b\nsrc/x.log\ntmp/keep\ntmp/other\n"
                    ".git/HEAD\nbuild/out\na/.DS_Store"),
        "classes": ("[a-c]?.txt\n[^x]*.o\nfile\\*\n\\[lit\\]\ndir/**\n**\n!dir/keep/**\n",
                    "b1.txt\nz.o\nfile*\n[lit]\ndir/keep/x\ndir/y\n"),
        "clean": ("./a//b/../c/\n../up\n/abs\n/\n!  spaced\n  # not a comment\r\n\ufeffbom\n",
                  "a/c\nup\nabs\nspaced\n# not a comment\n../x\n./a/c/d"),
        "exceptions": ("*\n!src\n!src/**\nsrc/**/*.test.js\n!**/keep.test.js\n^x\n",
                       "src/a.js\nsrc/b/c.test.js\nsrc/b/keep.test.js\nother\nx"),
    }
    for name, (patterns, paths) in ignores.items():
        put("dockerignore", name, patterns + "\0" + paths)
        put("dockerignore", name + "_default_paths", patterns)


if __name__ == "__main__":
    main()
