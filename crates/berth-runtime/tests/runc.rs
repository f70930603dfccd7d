//! The generated spec is real: it runs under `runc run` (Debian's runc) with a busybox
//! rootfs, and from inside the container the process sees seccomp in filter mode,
//! no-new-privileges, exactly the default capability set, and cannot unshare or mount.
//!
//! Needs root, `runc` on PATH and a static `/bin/busybox`; skipped (with a message on
//! stderr) when any is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::model::RunConfig;
use berth_runtime::caps::CapSet;
use berth_runtime::{generate, ContainerOptions};

const PROBE_ENV: &str = "BERTH_RUNTIME_CLONE3_PROBE";

fn runc_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let runc = Command::new("runc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let busybox = Path::new("/bin/busybox").exists();
    if !(root && runc && busybox) {
        eprintln!("skipping runc test: root={root} runc={runc} /bin/busybox={busybox}");
    }
    root && runc && busybox
}

struct Bundle {
    dir: tempfile::TempDir,
    id: String,
}

impl Bundle {
    fn new(tag: &str) -> Bundle {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "etc", "mnt", "tmp", "proc", "sys", "dev"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).expect("symlink");
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/tmp:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\napp:x:1000:\naudio:x:29:app\n",
        )
        .expect("group");
        Bundle {
            dir,
            id: format!("berth-spec-{tag}-{}", std::process::id()),
        }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Writes config.json and runs the container in the foreground; returns (exit ok, stdout+stderr).
    fn run(&self, spec: &oci_spec::runtime::Spec) -> (bool, String) {
        spec.save(self.dir.path().join("config.json"))
            .expect("save config.json");
        let state = self.dir.path().join("runc-state");
        let out = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(self.dir.path())
            .arg(&self.id)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("spawn runc");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(self.dir.path().join("runc-state"))
            .args(["delete", "-f", &self.id])
            .output();
    }
}

fn cmd(script: &str) -> RunConfig {
    RunConfig {
        cmd: Some(vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            script.into(),
        ]),
        ..RunConfig::default()
    }
}

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in output:\n{out}"))
}

#[test]
fn default_spec_runs_under_runc_with_the_security_defaults_in_force() {
    if !runc_available() {
        return;
    }
    let b = Bundle::new("default");
    let script = r#"grep -E "^(Seccomp|NoNewPrivs|CapEff):" /proc/self/status
/bin/busybox unshare -m /bin/busybox true; echo "unshare_rc=$?"
/bin/busybox mount -t tmpfs none /mnt; echo "mount_rc=$?"
echo "hostname=$(/bin/busybox hostname)"
echo "uid=$(/bin/busybox id -u)"
echo "keys_bytes=$(/bin/busybox cat /proc/keys | /bin/busybox wc -c)"
echo "timer_list_bytes=$(/bin/busybox cat /proc/timer_list | /bin/busybox wc -c)"
echo 1 > /proc/sys/kernel/panic_on_oops 2>/dev/null; echo "procsys_rc=$?"
echo "pids_max=$(/bin/busybox cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || /bin/busybox cat /sys/fs/cgroup/pids.max)"
echo "nofile=$(ulimit -n)"
echo "ifaces=$(/bin/busybox ls /sys/class/net | /bin/busybox tr '\n' ' ')""#;
    let opts = ContainerOptions {
        hostname: "berth-test".into(),
        ..ContainerOptions::default()
    };
    let spec = generate(&cmd(script), &b.rootfs(), &opts).expect("generate");
    let (ok, out) = b.run(&spec);
    println!("--- runc run output ---\n{out}-----------------------");
    assert!(ok, "runc run failed:\n{out}");
    assert_eq!(field(&out, "Seccomp:"), "2", "seccomp filter mode");
    assert_eq!(field(&out, "NoNewPrivs:"), "1");
    let capeff = u64::from_str_radix(field(&out, "CapEff:"), 16).expect("hex CapEff");
    assert_eq!(capeff, CapSet::default_set().mask());
    assert_eq!(capeff, 0x8004_05fb);
    assert_eq!(capeff & (1 << 13), 0, "no CAP_NET_RAW");
    assert_eq!(capeff & (1 << 21), 0, "no CAP_SYS_ADMIN");
    assert!(
        out.contains("Operation not permitted"),
        "unshare/mount must fail with EPERM:\n{out}"
    );
    assert_ne!(field(&out, "unshare_rc="), "0");
    assert_ne!(field(&out, "mount_rc="), "0");
    assert_eq!(field(&out, "hostname="), "berth-test");
    assert_eq!(field(&out, "uid="), "0");
    assert_eq!(field(&out, "keys_bytes="), "0", "/proc/keys is masked");
    assert_eq!(
        field(&out, "timer_list_bytes="),
        "0",
        "/proc/timer_list is masked"
    );
    assert_ne!(field(&out, "procsys_rc="), "0", "/proc/sys is read-only");
    assert_eq!(field(&out, "pids_max="), "2048");
    let nofile = berth_runtime::spec::DEFAULT_NOFILE
        .min(berth_runtime::seccomp::HostInfo::detect().max_nofile);
    assert_eq!(field(&out, "nofile="), nofile.to_string());
    assert_eq!(field(&out, "ifaces="), "lo", "network none: only loopback");
}

#[test]
fn user_read_only_and_cap_add_apply_under_runc() {
    if !runc_available() {
        return;
    }
    let b = Bundle::new("user");
    let script = r#"echo "id=$(/bin/busybox id -u):$(/bin/busybox id -g):$(/bin/busybox id -G)"
/bin/busybox touch /tmp/x 2>/dev/null; echo "touch_rc=$?"
grep -E "^CapBnd:" /proc/self/status"#;
    let opts = ContainerOptions {
        hostname: "u".into(),
        user: Some("app".into()),
        read_only: true,
        cap_add: vec!["net_raw".into()],
        cap_drop: vec!["CAP_CHOWN".into()],
        ..ContainerOptions::default()
    };
    let spec = generate(&cmd(script), &b.rootfs(), &opts).expect("generate");
    let (ok, out) = b.run(&spec);
    println!("--- runc run output ---\n{out}-----------------------");
    assert!(ok, "runc run failed:\n{out}");
    assert_eq!(field(&out, "id="), "1000:1000:1000 29");
    assert_ne!(field(&out, "touch_rc="), "0", "read-only rootfs");
    let bnd = u64::from_str_radix(field(&out, "CapBnd:"), 16).expect("hex");
    assert_ne!(bnd & (1 << 13), 0, "NET_RAW added");
    assert_eq!(bnd & 1, 0, "CHOWN dropped");
}

/// Runs this test binary inside a container (with its shared libraries copied in): the
/// libtest harness starts threads through glibc, which tries clone3 first; the probe then
/// calls clone3 itself and reports the errno, which must be ENOSYS, not EPERM.
#[test]
fn clone3_is_answered_with_enosys_under_runc() {
    if std::env::var_os(PROBE_ENV).is_some() {
        // Inside the container.
        // SAFETY: clone3 with a null args pointer and size 0 creates nothing: the kernel
        // (or the seccomp filter) rejects it before reading memory.
        let rc = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        println!("clone3_rc={rc}");
        println!("clone3_errno={errno}");
        return;
    }
    if !runc_available() {
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let ldd = Command::new("ldd").arg(&exe).output();
    let Ok(ldd) = ldd else {
        eprintln!("skipping clone3 probe: no ldd");
        return;
    };
    let b = Bundle::new("clone3");
    let rootfs = b.rootfs();
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let dst = rootfs.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir lib dir");
        std::fs::copy(lib, &dst).expect("copy lib");
    }
    std::fs::copy(&exe, rootfs.join("probe")).expect("copy probe");
    let image = RunConfig {
        cmd: Some(vec![
            "/probe".into(),
            "--exact".into(),
            "clone3_is_answered_with_enosys_under_runc".into(),
            "--nocapture".into(),
            "--test-threads=2".into(),
        ]),
        ..RunConfig::default()
    };
    let opts = ContainerOptions {
        hostname: "probe".into(),
        env: vec![format!("{PROBE_ENV}=1")],
        ..ContainerOptions::default()
    };
    let spec = generate(&image, &rootfs, &opts).expect("generate");
    let (ok, out) = b.run(&spec);
    println!("--- runc run output ---\n{out}-----------------------");
    assert!(ok, "probe failed:\n{out}");
    assert_eq!(field(&out, "clone3_rc="), "-1");
    assert_eq!(
        field(&out, "clone3_errno="),
        libc::ENOSYS.to_string(),
        "clone3 must fail with ENOSYS"
    );
}
