"""The Docker SDK for Python against a berth daemon: networks and published ports.

Usage: python3 networks.py unix:///path/berth.sock FIXTURE_DIR
Exits non-zero with a message on the first expectation that does not hold.
"""
import socket
import sys

import docker
from docker.types import IPAMConfig, IPAMPool

from _engine import ON_DOCKER


def expect(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def have_ipv6_loopback():
    """Whether this host has [::1] (the daemon's namespace shares its kernel's IPv6)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def main():
    host, fixtures = sys.argv[1], sys.argv[2]
    c = docker.DockerClient(base_url=host)
    with open(f"{fixtures}/app-docker-save.tar", "rb") as f:
        c.images.load(f.read())

    names = sorted(n.name for n in c.networks.list())
    expect(names == ["bridge", "host", "none"], f"predefined networks {names}")
    net = c.networks.create(
        "sdknet",
        driver="bridge",
        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="100.90.30.0/24")]),
        labels={"team": "sdk"},
    )
    expect(len(net.id) == 64, f"network id {net.id}")
    got = c.networks.get("sdknet")
    expect(got.attrs["IPAM"]["Config"][0]["Subnet"] == "100.90.30.0/24", f"ipam {got.attrs['IPAM']}")
    expect(got.attrs["Labels"] == {"team": "sdk"}, f"labels {got.attrs['Labels']}")
    listed = [n.name for n in c.networks.list(filters={"label": "team=sdk"})]
    expect(listed == ["sdknet"], f"filtered list {listed}")
    # A duplicate name is refused when the client asks for the check (the docker CLI
    # always does): 409, Docker's words.
    try:
        c.networks.create("sdknet", check_duplicate=True)
        sys.exit("FAIL: a duplicate network name was accepted")
    except docker.errors.APIError as e:
        expect(e.status_code == 409, f"duplicate: {e.status_code} {e}")
        expect("network with name sdknet already exists" in str(e), f"duplicate: {e}")
    if not ON_DOCKER:
        # berth policy: names are unique, whether or not the client asks for the check
        # (Docker 20.10 makes a second "sdknet" without CheckDuplicate; Docker 25
        # refuses it always, as berth does).
        try:
            c.networks.create("sdknet")
            sys.exit("FAIL: a duplicate network name was accepted")
        except docker.errors.APIError as e:
            expect(e.status_code == 409, f"duplicate: {e.status_code} {e}")

    ctr = c.containers.run(
        "fixture/app:1",
        ["sleep 300"],
        detach=True,
        name="sdk-web",
        network="sdknet",
        ports={"80/tcp": ("127.0.0.1", None)},
    )
    try:
        ctr.reload()
        ep = ctr.attrs["NetworkSettings"]["Networks"]["sdknet"]
        expect(ep["IPAddress"].startswith("100.90.30."), f"endpoint {ep}")
        expect(ep["NetworkID"] == net.id, f"network id of the endpoint {ep}")
        bound = ctr.ports.get("80/tcp")
        expect(
            bound and bound[0]["HostIp"] == "127.0.0.1" and int(bound[0]["HostPort"]) > 0,
            f"ports {ctr.ports}",
        )
        net.reload()
        expect([x.id for x in net.containers] == [ctr.id], f"network containers {net.attrs['Containers']}")

        other = c.containers.create("fixture/app:1", name="sdk-other")
        net.connect(other, aliases=["buddy"])
        other.reload()
        aliases = other.attrs["NetworkSettings"]["Networks"]["sdknet"]["Aliases"]
        # Docker 20.10 appends the short ID on a user-defined network.
        expect(aliases == ["buddy", other.id[:12]], f"aliases {aliases}")
        net.disconnect(other)
        other.reload()
        expect("sdknet" not in other.attrs["NetworkSettings"]["Networks"], "disconnected")
        other.remove()

        # The SDK's mac_address is the container-wide Config.MacAddress: the primary
        # network's interface gets it; connect's mac_address and link_local_ips too.
        mac = c.containers.run(
            "fixture/app:1",
            ["sleep 300"],
            detach=True,
            name="sdk-mac",
            network="sdknet",
            mac_address="02:42:aa:bb:cc:01",
        )
        try:
            c.api.connect_container_to_network(
                mac.id, "bridge", mac_address="02:42:aa:bb:cc:02", link_local_ips=["169.254.20.2"]
            )
            mac.reload()
            nets = mac.attrs["NetworkSettings"]["Networks"]
            expect(nets["sdknet"]["MacAddress"] == "02:42:aa:bb:cc:01", f"endpoint {nets['sdknet']}")
            # Docker 20.10 (API 1.41) ignores EndpointConfig.MacAddress on connect; Docker
            # 25 (API 1.44) and berth honour it (docs/TESTING.md, what differs).
            if not ON_DOCKER:
                expect(nets["bridge"]["MacAddress"] == "02:42:aa:bb:cc:02", f"endpoint {nets['bridge']}")
            expect(
                nets["bridge"]["IPAMConfig"]["LinkLocalIPs"] == ["169.254.20.2"],
                f"link-local {nets['bridge']}",
            )
            code, out = mac.exec_run(["sh", "-c", "cat /sys/class/net/eth0/address /sys/class/net/eth1/address; ip -4 -o addr show eth1"])
            lines = out.decode()
            want = "02:42:aa:bb:cc:01\n" if ON_DOCKER else "02:42:aa:bb:cc:01\n02:42:aa:bb:cc:02\n"
            expect(code == 0 and lines.startswith(want), f"interfaces {lines}")
            expect("169.254.20.2/16" in lines, f"link-local address {lines}")
            # berth refuses a bad MAC at create; Docker 20.10 takes it and fails at start.
            if not ON_DOCKER:
                try:
                    c.containers.create("fixture/app:1", name="sdk-badmac", network="sdknet", mac_address="02:42:xx:00:00:01")
                    sys.exit("FAIL: a bad MAC address was accepted")
                except docker.errors.APIError as e:
                    expect(e.status_code == 400 and "invalid MAC address" in str(e), f"bad mac: {e.status_code} {e}")
        finally:
            mac.remove(force=True)

        try:
            net.remove()
            sys.exit("FAIL: a network in use was removed")
        except docker.errors.APIError as e:
            expect(e.status_code == 403, f"remove in use: {e.status_code} {e}")
    finally:
        ctr.remove(force=True)
    # A dual-stack network: an IPv4 and an IPv6 pool, EnableIPv6; the container gets an
    # address of each and the IPv6 gateway.
    net6 = c.networks.create(
        "sdknet6",
        driver="bridge",
        enable_ipv6=True,
        ipam=IPAMConfig(
            pool_configs=[
                IPAMPool(subnet="100.90.31.0/24"),
                IPAMPool(subnet="fd00:90:31::/64", gateway="fd00:90:31::1"),
            ]
        ),
    )
    try:
        net6.reload()
        expect(net6.attrs["EnableIPv6"] is True, f"EnableIPv6 {net6.attrs}")
        subnets = sorted(x["Subnet"] for x in net6.attrs["IPAM"]["Config"])
        expect(subnets == ["100.90.31.0/24", "fd00:90:31::/64"], f"ipam {net6.attrs['IPAM']}")
        ctr6 = c.containers.run("fixture/app:1", ["sleep 300"], detach=True, name="sdk-six", network="sdknet6")
        try:
            ctr6.reload()
            ep = ctr6.attrs["NetworkSettings"]["Networks"]["sdknet6"]
            expect(ep["IPAddress"].startswith("100.90.31."), f"endpoint {ep}")
            expect(
                ep["GlobalIPv6Address"].startswith("fd00:90:31::") and ep["GlobalIPv6PrefixLen"] == 64,
                f"IPv6 endpoint {ep}",
            )
            expect(ep["IPv6Gateway"] == "fd00:90:31::1", f"IPv6 gateway {ep}")
            code, out = ctr6.exec_run(["sh", "-c", "ip -6 -o addr show eth0 scope global"])
            expect(code == 0 and ep["GlobalIPv6Address"] + "/64" in out.decode(), f"eth0 {out}")
        finally:
            ctr6.remove(force=True)
    finally:
        net6.remove()

    # The host's IPv6 loopback (the userland proxy's, as Docker's): the binding as asked.
    if have_ipv6_loopback():
        lo6 = c.containers.run(
            "fixture/app:1",
            ["exec httpd -f -p 80 -h /etc"],
            detach=True,
            name="sdk-lo6",
            ports={"80/tcp": ("::1", None), "53/udp": ("::1", None)},
        )
        try:
            lo6.reload()
            for key in ("80/tcp", "53/udp"):
                bound = lo6.ports.get(key)
                expect(
                    bound and len(bound) == 1 and bound[0]["HostIp"] == "::1" and int(bound[0]["HostPort"]) > 0,
                    f"ports {lo6.ports}",
                )
        finally:
            lo6.remove(force=True)

    report = c.networks.prune()
    expect(report.get("NetworksDeleted") == ["sdknet"], f"prune {report}")
    print("ok")


main()
