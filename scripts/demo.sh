#!/usr/bin/env bash
# Builds berth and shows what it does today: a daemon on its own state root, images in
# from archives written by Docker and skopeo, out again in both formats, inspected;
# containers run with safe defaults (foreground, detached with a restart policy and a
# health check, exec, logs, stats, a user-defined network with name resolution and a
# published port, a named volume), then everything is cleaned up,
# through berth's CLI and (when installed) the real docker CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release -p berth -p berth-shim
BERTH=$PWD/target/release/berth
STATE=${BERTH_DEMO_DIR:-$PWD/demo-state}
FIXTURES=${BERTH_FIXTURES:-$PWD/tests/fixtures}
rm -rf "$STATE"; mkdir -p "$STATE"
SOCK=$STATE/berth.sock
export BERTH_HOST=unix://$SOCK
# Its default bridge gets a name of its own; berth's nftables table is one per host (per
# network namespace), so do not run the demo next to a berth daemon serving this host.
"$BERTH" daemon --root "$STATE/root" --host "$BERTH_HOST" --bridge berth-demo0 >"$STATE/daemon.log" 2>&1 &
DAEMON=$!
trap 'kill $DAEMON 2>/dev/null; wait $DAEMON 2>/dev/null || true; ip link del berth-demo0 2>/dev/null || true; nft delete table ip berth 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$BERTH" version
# A rootfs from Debian's static busybox, imported as an image.
mkdir -p "$STATE/rootfs/bin"
cp /bin/busybox "$STATE/rootfs/bin/"
for a in sh ls cat echo true sleep grep hostname httpd nslookup; do ln -sf busybox "$STATE/rootfs/bin/$a"; done
tar -C "$STATE/rootfs" -czf "$STATE/rootfs.tar.gz" .
step "$BERTH" import -c 'CMD ["/bin/sh"]' -c 'ENV APP=demo' "$STATE/rootfs.tar.gz" demo/busybox:1
if [ -d "$FIXTURES" ]; then
    # skopeo's OCI copy drops Docker's Healthcheck, so it is another image ID; the
    # Docker archive loaded second takes the tag fixture/app:1, as with Docker.
    step "$BERTH" load -i "$FIXTURES/app-oci-archive.tar"
    step "$BERTH" load -i "$FIXTURES/app-docker-save.tar"
fi
step "$BERTH" images
step "$BERTH" image inspect --format '{{.Id}} {{json .Config.Env}}' demo/busybox:1
step "$BERTH" tag demo/busybox:1 demo/busybox:stable
step "$BERTH" save -o "$STATE/demo-docker.tar" demo/busybox:1
step "$BERTH" save --format oci -o "$STATE/demo-oci.tar" demo/busybox:1
step skopeo inspect --config "docker-archive:$STATE/demo-docker.tar" --format '{{.Config.Env}}'
step skopeo inspect "oci-archive:$STATE/demo-oci.tar" --format '{{.Digest}}'
if command -v docker >/dev/null; then
    export DOCKER_HOST=$BERTH_HOST
    step docker images
    step docker system df
fi
# Containers: confined by default (seccomp, no-new-privileges, Podman's capabilities).
step "$BERTH" run --rm demo/busybox:1 sh -c 'echo hello from a container; grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status'
step "$BERTH" run -d --name ticker --restart on-failure:3 --health-cmd true --health-interval 1s \
    demo/busybox:1 sh -c 'while true; do echo tick; sleep 1; done'
sleep 2.5
step "$BERTH" ps
step "$BERTH" exec ticker hostname
step "$BERTH" logs --tail 2 ticker
step "$BERTH" stats --no-stream ticker
step "$BERTH" inspect --format '{{.State.Health.Status}} restart={{.HostConfig.RestartPolicy.Name}}' ticker
step "$BERTH" stop -t 1 ticker
step "$BERTH" rm ticker
# Networks: containers find each other by name through the network's DNS server; a
# published port is a kernel rule (no proxy process listens on it).
step "$BERTH" network create demo-net
step "$BERTH" run -d --name web --network demo-net -p 127.0.0.1::80 demo/busybox:1 httpd -f -p 80 -h /etc
step "$BERTH" run --rm --network demo-net demo/busybox:1 nslookup web
step "$BERTH" port web 80
PORT=$("$BERTH" port web 80 | head -n1 | sed 's/.*://')
step curl -s "http://127.0.0.1:$PORT/hostname"
step "$BERTH" network ls
step "$BERTH" rm -f web
step "$BERTH" network rm demo-net
# Builds: a Dockerfile through Docker's classic builder (RUN steps have no network
# unless asked); a rebuild with nothing changed takes every step from the cache.
mkdir -p "$STATE/ctx"
printf 'FROM demo/busybox:1\nRUN echo built at build time > /built\nCOPY note.txt /note.txt\nCMD ["cat", "/built", "/note.txt"]\n' >"$STATE/ctx/Dockerfile"
echo "a note from the build context" >"$STATE/ctx/note.txt"
step "$BERTH" build -t demo/app:1 "$STATE/ctx"
step "$BERTH" run --rm demo/app:1
step "$BERTH" build -t demo/app:1 "$STATE/ctx"
step "$BERTH" rmi demo/app:1
# A named volume outlives the containers that use it.
step "$BERTH" volume create demo-data
step "$BERTH" run --rm -v demo-data:/data demo/busybox:1 sh -c 'echo kept > /data/f'
step "$BERTH" run --rm -v demo-data:/data:ro demo/busybox:1 cat /data/f
step "$BERTH" volume rm demo-data
step "$BERTH" rmi demo/busybox:stable
step "$BERTH" image prune -a -f
step "$BERTH" system df
echo
echo "demo done; daemon log: $STATE/daemon.log"
