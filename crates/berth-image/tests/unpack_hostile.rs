//! Hostile-layer tests for `berth_image::unpack`. They run as root (ownership, devices,
//! trusted xattrs). Every test uses its own tempdir, so they run in parallel.
//!
//! Layout of each test environment:
//! ```text
//! tmp/
//!   outside/sentinel        must never change
//!   outside/etc/passwd      must never change
//!   box/layer/dest/         the layer root (deep enough that `../../x` still lands in tmp)
//! ```
//! After every escape attempt the whole of `tmp` except `dest` is compared with a snapshot.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_image::unpack::{unpack_layer, UnpackError, UnpackOptions, UnpackStats};

// ---------------------------------------------------------------------------------------------
// Crafted tar streams

#[derive(Clone)]
struct E {
    name: Vec<u8>,
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Vec<u8>,
    data: Vec<u8>,
    /// Header size field when it must differ from `data.len()`.
    size: Option<u64>,
    dev: (u32, u32),
    pax: Vec<(Vec<u8>, Vec<u8>)>,
    gnu_longname: bool,
    gnu_longlink: bool,
}

fn entry(name: &[u8], kind: u8) -> E {
    E {
        name: name.to_vec(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_600_000_000,
        link: Vec::new(),
        data: Vec::new(),
        size: None,
        dev: (0, 0),
        pax: Vec::new(),
        gnu_longname: false,
        gnu_longlink: false,
    }
}

fn file(name: &str, data: &[u8]) -> E {
    let mut e = entry(name.as_bytes(), b'0');
    e.data = data.to_vec();
    e
}

fn dir(name: &str) -> E {
    entry(name.as_bytes(), b'5').mode(0o755)
}

fn symlink(name: &str, target: &str) -> E {
    let mut e = entry(name.as_bytes(), b'2').mode(0o777);
    e.link = target.as_bytes().to_vec();
    e
}

fn hardlink(name: &str, target: &str) -> E {
    let mut e = entry(name.as_bytes(), b'1');
    e.link = target.as_bytes().to_vec();
    e
}

fn fifo(name: &str) -> E {
    entry(name.as_bytes(), b'6')
}

fn device(name: &str, kind: u8, major: u32, minor: u32) -> E {
    let mut e = entry(name.as_bytes(), kind);
    e.dev = (major, minor);
    e
}

impl E {
    fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
    fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    fn mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }
    fn pax(mut self, key: &str, value: &[u8]) -> Self {
        self.pax.push((key.as_bytes().to_vec(), value.to_vec()));
        self
    }
    fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }
    fn longname(mut self) -> Self {
        self.gnu_longname = true;
        self
    }
    fn longlink(mut self) -> Self {
        self.gnu_longlink = true;
        self
    }
}

fn header(name: &[u8], kind: u8, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        let n = name.len().min(old.name.len());
        old.name[..n].copy_from_slice(&name[..n]);
    }
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    h
}

fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    // "LEN key=value\n" where LEN counts the whole record, itself included.
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut rec = format!("{len} ").into_bytes();
    rec.extend_from_slice(key);
    rec.push(b'=');
    rec.extend_from_slice(value);
    rec.push(b'\n');
    assert_eq!(rec.len(), len);
    rec
}

fn append(out: &mut Vec<u8>, e: &E) {
    if !e.pax.is_empty() {
        let mut records = Vec::new();
        for (k, v) in &e.pax {
            records.extend(pax_record(k, v));
        }
        out.extend_from_slice(header(b"././@PaxHeader", b'x', records.len() as u64).as_bytes());
        push_data(out, &records);
    }
    if e.gnu_longlink {
        let mut data = e.link.clone();
        data.push(0);
        out.extend_from_slice(header(b"././@LongLink", b'K', data.len() as u64).as_bytes());
        push_data(out, &data);
    }
    if e.gnu_longname {
        let mut data = e.name.clone();
        data.push(0);
        out.extend_from_slice(header(b"././@LongLink", b'L', data.len() as u64).as_bytes());
        push_data(out, &data);
    }
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        let n = e.name.len().min(old.name.len());
        old.name[..n].copy_from_slice(&e.name[..n]);
        let n = e.link.len().min(old.linkname.len());
        old.linkname[..n].copy_from_slice(&e.link[..n]);
    }
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(e.mtime);
    h.set_size(e.size.unwrap_or(e.data.len() as u64));
    // Raw typeflag: `set_entry_type` would turn an old-style '\0' into '0'.
    h.as_old_mut().linkflag = [e.kind];
    if e.kind == b'3' || e.kind == b'4' {
        h.set_device_major(e.dev.0).expect("device major");
        h.set_device_minor(e.dev.1).expect("device minor");
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    push_data(out, &e.data);
}

fn tar(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        append(&mut out, e);
    }
    out.extend([0u8; 1024]);
    out
}

// ---------------------------------------------------------------------------------------------
// Environment

#[derive(Debug, PartialEq)]
struct Node {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    mtime: (i64, i64),
    content: Vec<u8>,
}

fn snapshot(root: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let mut entries: Vec<_> = fs::read_dir(root)
        .expect("read_dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path == skip {
            continue;
        }
        let md = fs::symlink_metadata(&path).expect("lstat");
        let ft = md.file_type();
        let (kind, content) = if ft.is_symlink() {
            (
                "symlink",
                fs::read_link(&path)
                    .expect("readlink")
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else if ft.is_dir() {
            ("dir", Vec::new())
        } else if ft.is_file() {
            ("file", fs::read(&path).expect("read"))
        } else {
            ("other", Vec::new())
        };
        out.insert(
            path.clone(),
            Node {
                kind: kind.to_string(),
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                nlink: md.nlink(),
                mtime: (md.mtime(), md.mtime_nsec()),
                content,
            },
        );
        if ft.is_dir() {
            snapshot(&path, skip, out);
        }
    }
}

struct Env {
    tmp: tempfile::TempDir,
    dest: PathBuf,
    outside: PathBuf,
    before: BTreeMap<PathBuf, Node>,
    passwd: Vec<u8>,
}

const SENTINEL: &[u8] = b"precious host data\n";

fn env() -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("box/layer/dest");
    fs::create_dir_all(&dest).expect("create dest");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(outside.join("etc")).expect("create outside");
    fs::write(outside.join("sentinel"), SENTINEL).expect("write sentinel");
    fs::write(outside.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").expect("write passwd");
    let mut before = BTreeMap::new();
    snapshot(tmp.path(), &dest, &mut before);
    let passwd = fs::read("/etc/passwd").unwrap_or_default();
    Env {
        tmp,
        dest,
        outside,
        before,
        passwd,
    }
}

impl Env {
    fn unpack(&self, bytes: &[u8]) -> Result<UnpackStats, UnpackError> {
        unpack_layer(bytes, &self.dest, &UnpackOptions::default())
    }

    fn unpack_with(&self, bytes: &[u8], opts: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
        unpack_layer(bytes, &self.dest, opts)
    }

    fn outside_str(&self) -> String {
        self.outside.to_str().expect("utf-8 tempdir").to_string()
    }

    fn d(&self, rel: &str) -> PathBuf {
        self.dest.join(rel)
    }

    /// Nothing outside `dest` changed: not the sentinel, not the rest of the tempdir, not /etc/passwd.
    fn assert_outside_unchanged(&self) {
        let mut after = BTreeMap::new();
        snapshot(self.tmp.path(), &self.dest, &mut after);
        assert_eq!(self.before, after, "something outside dest changed");
        assert_eq!(
            fs::read(self.outside.join("sentinel")).expect("read sentinel"),
            SENTINEL
        );
        assert_eq!(fs::read("/etc/passwd").unwrap_or_default(), self.passwd);
    }
}

/// The rule of an `Entry` error, or a panic describing what came instead.
#[track_caller]
fn entry_rule(result: Result<UnpackStats, UnpackError>) -> (String, String) {
    match result {
        Err(UnpackError::Entry { entry, rule }) => (entry, rule),
        other => panic!("expected an entry error, got {other:?}"),
    }
}

#[track_caller]
fn assert_rule(result: Result<UnpackStats, UnpackError>, want: &str) {
    let (entry, rule) = entry_rule(result);
    assert!(
        rule.contains(want),
        "entry {entry}: rule {rule:?} does not contain {want:?}"
    );
}

fn md(path: &Path) -> fs::Metadata {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()))
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Path traversal

#[test]
fn dotdot_paths_are_refused() {
    for name in [
        "../escape-x",
        "a/../../escape-x",
        "../../escape-x",
        "../../../../etc/passwd",
        "./../escape-x",
        "a/b/../../../escape-x",
        "/../escape-x",
        "../../../outside/sentinel",
    ] {
        let env = env();
        let result = env.unpack(&tar(&[file(name, b"pwned")]));
        assert_rule(result, "path escapes the layer root");
        env.assert_outside_unchanged();
    }
}

#[test]
fn dotdot_in_long_names_is_refused() {
    let deep_escape = format!("{}{}", "../".repeat(40), "outside/sentinel");
    for e in [
        file(&deep_escape, b"pwned").longname(),
        file("innocent", b"pwned").pax("path", deep_escape.as_bytes()),
    ] {
        let env = env();
        assert_rule(env.unpack(&tar(&[e])), "path escapes the layer root");
        env.assert_outside_unchanged();
    }
}

#[test]
fn absolute_paths_land_inside_the_root() {
    let env = env();
    let stats = env
        .unpack(&tar(&[
            file("/etc/passwd", b"evil\n"),
            dir("//usr/"),
            file("/usr//bin/./x", b"x"),
        ]))
        .expect("unpack");
    assert_eq!(stats.entries, 3);
    assert_eq!(fs::read(env.d("etc/passwd")).expect("read"), b"evil\n");
    assert_eq!(fs::read(env.d("usr/bin/x")).expect("read"), b"x");
    env.assert_outside_unchanged();
}

#[test]
fn absolute_path_to_the_outside_dir_lands_inside() {
    let env = env();
    let target = format!("{}/sentinel", env.outside_str());
    env.unpack(&tar(&[file(&target, b"pwned")]))
        .expect("unpack");
    let inside = env.dest.join(target.trim_start_matches('/'));
    assert_eq!(fs::read(inside).expect("read"), b"pwned");
    env.assert_outside_unchanged();
}

// ---------------------------------------------------------------------------------------------
// Symlinks

#[test]
fn writing_through_a_symlinked_parent_is_refused() {
    let cases = |outside: &str| -> Vec<(Vec<E>, &'static str)> {
        vec![
            (
                vec![symlink("a", outside), file("a/sentinel", b"pwned")],
                "parent directory a is a symlink",
            ),
            (
                vec![
                    symlink("a", "../../../outside"),
                    file("a/sentinel", b"pwned"),
                ],
                "parent directory a is a symlink",
            ),
            (
                vec![symlink("etc", "/etc"), file("etc/passwd", b"pwned")],
                "parent directory etc is a symlink",
            ),
            (
                vec![
                    symlink("r", "../../.."),
                    file("r/outside/sentinel", b"pwned"),
                ],
                "parent directory r is a symlink",
            ),
            (
                vec![dir("d"), symlink("d/l", outside), file("d/l/x/y", b"pwned")],
                "parent directory d/l is a symlink",
            ),
            (
                vec![symlink("a", outside), dir("a/newdir")],
                "parent directory a is a symlink",
            ),
            (
                vec![symlink("a", outside), symlink("a/sentinel", "/")],
                "parent directory a is a symlink",
            ),
            (
                vec![symlink("a", outside), fifo("a/fifo")],
                "parent directory a is a symlink",
            ),
            (
                vec![symlink("a", outside), file("a/.wh.sentinel", b"")],
                "parent directory a is a symlink",
            ),
            (
                vec![symlink("a", outside), file("a/.wh..wh..opq", b"")],
                "parent directory a is a symlink",
            ),
            (
                vec![
                    file("f", b"x"),
                    hardlink("a", "f"),
                    symlink("s", outside),
                    hardlink("s/sentinel", "f"),
                ],
                "parent directory s is a symlink",
            ),
        ]
    };
    for i in 0..cases("").len() {
        let env = env();
        let (entries, want) = cases(&env.outside_str()).swap_remove(i);
        assert_rule(env.unpack(&tar(&entries)), want);
        env.assert_outside_unchanged();
    }
}

#[test]
fn a_file_replaces_a_symlink_of_the_same_name() {
    let env = env();
    let sentinel = format!("{}/sentinel", env.outside_str());
    env.unpack(&tar(&[
        symlink("a", &sentinel),
        file("a", b"new content"),
        symlink("d", &env.outside_str()),
        dir("d"),
        file("d/sentinel", b"inside"),
        symlink("f", &sentinel),
        fifo("f"),
    ]))
    .expect("unpack");
    assert!(md(&env.d("a")).file_type().is_file());
    assert_eq!(fs::read(env.d("a")).expect("read"), b"new content");
    assert!(md(&env.d("d")).is_dir());
    assert_eq!(fs::read(env.d("d/sentinel")).expect("read"), b"inside");
    assert!(md(&env.d("f")).file_type().is_fifo());
    env.assert_outside_unchanged();
}

#[test]
fn symlink_targets_are_stored_verbatim() {
    let env = env();
    env.unpack(&tar(&[
        symlink("abs", "/etc/passwd"),
        symlink("up", "../../../../../.."),
        symlink("weird", "a//b/./c/"),
        symlink("long", &"x/".repeat(200)).longlink(),
        symlink("paxlong", "ignored").pax("linkpath", "y/".repeat(300).as_bytes()),
    ]))
    .expect("unpack");
    assert_eq!(
        fs::read_link(env.d("abs")).expect("readlink"),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(env.d("up")).expect("readlink"),
        Path::new("../../../../../..")
    );
    assert_eq!(
        fs::read_link(env.d("weird")).expect("readlink"),
        Path::new("a//b/./c/")
    );
    assert_eq!(
        fs::read_link(env.d("long")).expect("readlink"),
        Path::new(&"x/".repeat(200))
    );
    assert_eq!(
        fs::read_link(env.d("paxlong")).expect("readlink"),
        Path::new(&"y/".repeat(300))
    );
    env.assert_outside_unchanged();
}

#[test]
fn nul_bytes_are_refused() {
    let env = env();
    assert_rule(
        env.unpack(&tar(&[symlink("s", "x").pax("linkpath", b"/etc\0/passwd")])),
        "symlink target contains a NUL byte",
    );
    let env = self::env();
    assert_rule(
        env.unpack(&tar(&[file("f", b"x").pax("path", b"a\0b")])),
        "path contains a NUL byte",
    );
    let env = self::env();
    assert_rule(
        env.unpack(&tar(&[symlink("s", "")])),
        "symlink has an empty target",
    );
}

// ---------------------------------------------------------------------------------------------
// Hard links

#[test]
fn hardlink_target_escaping_the_root_is_refused() {
    for target in [
        "../../etc/passwd",
        "../x",
        "a/../../outside/sentinel",
        "../../../outside/sentinel",
    ] {
        let env = env();
        let (_, rule) = entry_rule(env.unpack(&tar(&[file("a", b"x"), hardlink("h", target)])));
        assert_eq!(
            rule,
            format!("hard link target {target} escapes the layer root")
        );
        env.assert_outside_unchanged();
    }
    // An absolute target is inside the root like every other path: it does not exist there.
    let env = env();
    let target = format!("{}/sentinel", env.outside_str());
    assert_rule(
        env.unpack(&tar(&[hardlink("h", &target)])),
        "does not exist earlier in the layer",
    );
    env.assert_outside_unchanged();
    assert_eq!(md(&env.outside.join("sentinel")).nlink(), 1);
}

#[test]
fn hardlink_to_a_later_entry_is_refused() {
    let env = env();
    let (entry, rule) = entry_rule(env.unpack(&tar(&[hardlink("a", "b"), file("b", b"x")])));
    assert_eq!(entry, "a");
    assert_eq!(
        rule,
        "hard link target b does not exist earlier in the layer"
    );
    env.assert_outside_unchanged();
}

#[test]
fn hardlink_to_a_directory_is_refused() {
    for entries in [
        vec![dir("d"), hardlink("h", "d")],
        vec![dir("d"), hardlink("d/y", "d")],
        vec![dir("d"), dir("d/e"), hardlink("d/e/f", "d/e")],
        vec![hardlink("h", "./")],
    ] {
        let env = env();
        assert_rule(env.unpack(&tar(&entries)), "is a directory");
    }
}

#[test]
fn hardlink_through_a_symlinked_parent_is_refused() {
    let env = env();
    let outside = env.outside_str();
    assert_rule(
        env.unpack(&tar(&[symlink("l", &outside), hardlink("h", "l/sentinel")])),
        "hard link target l/sentinel: parent directory l is a symlink",
    );
    assert_eq!(md(&env.outside.join("sentinel")).nlink(), 1);
    env.assert_outside_unchanged();
}

#[test]
fn hardlink_to_a_symlink_links_the_symlink_itself() {
    let env = env();
    let sentinel = format!("{}/sentinel", env.outside_str());
    env.unpack(&tar(&[symlink("s", &sentinel), hardlink("h", "s")]))
        .expect("unpack");
    let s = md(&env.d("s"));
    let h = md(&env.d("h"));
    assert!(h.file_type().is_symlink());
    assert_eq!(s.ino(), h.ino());
    assert_eq!(h.nlink(), 2);
    assert_eq!(md(&env.outside.join("sentinel")).nlink(), 1);
    env.assert_outside_unchanged();

    // Writing to the link name later replaces the link; the host file is untouched.
    let env = self::env();
    let sentinel = format!("{}/sentinel", env.outside_str());
    env.unpack(&tar(&[
        symlink("s", &sentinel),
        hardlink("h", "s"),
        file("h", b"overwrite"),
    ]))
    .expect("unpack");
    assert_eq!(fs::read(env.d("h")).expect("read"), b"overwrite");
    assert!(md(&env.d("s")).file_type().is_symlink());
    env.assert_outside_unchanged();

    // Writing beneath it is refused.
    let env = self::env();
    let outside = env.outside_str();
    assert_rule(
        env.unpack(&tar(&[
            symlink("s", &outside),
            hardlink("h", "s"),
            file("h/sentinel", b"pwned"),
        ])),
        "parent directory h is a symlink",
    );
    env.assert_outside_unchanged();
}

#[test]
fn hardlink_named_over_an_existing_symlink() {
    let env = env();
    let sentinel = format!("{}/sentinel", env.outside_str());
    env.unpack(&tar(&[
        symlink("s", &sentinel),
        file("f", b"data"),
        hardlink("s", "f"),
        symlink("t", &env.outside_str()),
        hardlink("t", "f"),
    ]))
    .expect("unpack");
    for name in ["s", "t"] {
        let m = md(&env.d(name));
        assert!(m.file_type().is_file());
        assert_eq!(m.ino(), md(&env.d("f")).ino());
    }
    assert_eq!(md(&env.d("f")).nlink(), 3);
    assert_eq!(fs::read(env.d("s")).expect("read"), b"data");
    env.assert_outside_unchanged();
}

#[test]
fn hardlink_edge_cases() {
    // A hard link to itself is a no-op.
    let env = env();
    env.unpack(&tar(&[
        file("a", b"x"),
        hardlink("a", "a"),
        hardlink("./b/../a", "a"),
    ]))
    .expect("unpack");
    assert_eq!(fs::read(env.d("a")).expect("read"), b"x");
    assert_eq!(md(&env.d("a")).nlink(), 1);

    // A link replacing the directory that holds its target is refused.
    let env = self::env();
    assert_rule(
        env.unpack(&tar(&[dir("d"), file("d/t", b"x"), hardlink("d", "d/t")])),
        "inside the directory the link replaces",
    );

    // Links with parents that do not exist yet get them created; target in another dir.
    let env = self::env();
    env.unpack(&tar(&[
        file("x/y/t", b"t"),
        hardlink("p/q/l", "x/y/t"),
        hardlink("r", "/x/y/t"),
    ]))
    .expect("unpack");
    assert_eq!(md(&env.d("p/q/l")).ino(), md(&env.d("x/y/t")).ino());
    assert_eq!(md(&env.d("r")).ino(), md(&env.d("x/y/t")).ino());

    // A link to a whiteout and to a fifo is fine (non-directories).
    let env = self::env();
    env.unpack(&tar(&[
        file(".wh.gone", b""),
        hardlink("w", "gone"),
        fifo("p"),
        hardlink("p2", "p"),
    ]))
    .expect("unpack");
    assert!(md(&env.d("w")).file_type().is_char_device());
    assert!(md(&env.d("p2")).file_type().is_fifo());
}

// ---------------------------------------------------------------------------------------------
// Whiteouts

#[test]
fn whiteout_odd_names_are_refused() {
    for (name, want) in [
        (".wh.", "whiteout name '' is not a file name"),
        (".wh..", "whiteout name '.' is not a file name"),
        (".wh...", "whiteout name '..' is not a file name"),
        ("a/.wh...", "whiteout name '..' is not a file name"),
        (
            ".wh..wh.plnk",
            "whiteout name '.wh..wh.plnk' is not allowed",
        ),
        (
            ".wh..wh.aufs",
            "whiteout name '.wh..wh.aufs' is not allowed",
        ),
        (
            "d/.wh..wh.orph",
            "whiteout name '.wh..wh.orph' is not allowed",
        ),
        (".wh..wh.", "whiteout name '.wh..wh.' is not allowed"),
    ] {
        let env = env();
        let (_, rule) = entry_rule(env.unpack(&tar(&[file(name, b"")])));
        assert_eq!(rule, want, "for {name}");
        env.assert_outside_unchanged();
    }
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let env = env();
    let stats = env
        .unpack(&tar(&[
            dir("a"),
            file("a/.wh.gone", b"").owner(12, 34),
            file(".wh.top", b""),
            file("deep/er/.wh.x", b""),
            // A whiteout replaces an earlier entry of the same name in this layer...
            file("b", b"data"),
            file(".wh.b", b""),
            dir("c"),
            file("c/inner", b""),
            file(".wh.c", b""),
            // ...and a later entry replaces a whiteout.
            file(".wh.later", b""),
            file("later", b"back"),
            // A directory-typed whiteout is still a whiteout.
            dir(".wh.dirwh"),
            file(".wh..wh", b""),
        ]))
        .expect("unpack");
    assert_eq!(stats.entries, 13);
    for name in ["a/gone", "top", "deep/er/x", "b", "c", "dirwh", ".wh"] {
        let m = md(&env.d(name));
        assert!(m.file_type().is_char_device(), "{name} is not a whiteout");
        assert_eq!(m.rdev(), 0, "{name}");
    }
    assert_eq!(md(&env.d("a/gone")).uid(), 12);
    assert_eq!(md(&env.d("a/gone")).gid(), 34);
    assert!(!env.d("a/.wh.gone").exists());
    assert_eq!(fs::read(env.d("later")).expect("read"), b"back");
    env.assert_outside_unchanged();
}

#[test]
fn opaque_markers_set_the_overlay_xattr() {
    let env = env();
    env.unpack(&tar(&[
        dir("a"),
        file("a/keep", b"x"),
        file("a/.wh..wh..opq", b""),
        file("m/n/.wh..wh..opq", b""),
        file(".wh..wh..opq", b""),
        // The directory's own entry after its marker merges and keeps the xattr.
        dir("m/n").mode(0o700),
    ]))
    .expect("unpack");
    assert_eq!(
        xattr(&env.d("a"), "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );
    assert_eq!(
        xattr(&env.d("m/n"), "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );
    assert_eq!(
        xattr(&env.dest, "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );
    assert_eq!(xattr(&env.d("m"), "trusted.overlay.opaque"), None);
    assert!(env.d("a/keep").exists());
    assert!(!env.d("a/.wh..wh..opq").exists());
    assert_eq!(md(&env.d("m/n")).mode() & 0o7777, 0o700);
    env.assert_outside_unchanged();
}

// ---------------------------------------------------------------------------------------------
// Devices, fifos, privileged bits, xattrs

#[test]
fn device_nodes_are_skipped_and_fifos_created() {
    let env = env();
    let stats = env
        .unpack(&tar(&[
            device("dev/null", b'3', 1, 3),
            device("dev/sda", b'4', 8, 0),
            device("dev/kmsg", b'3', 1, 11),
            device("dev/wh", b'3', 0, 0),
            fifo("run/pipe").mode(0o620).owner(5, 6).mtime(1_000_000),
        ]))
        .expect("unpack");
    assert_eq!(stats.skipped_devices, 3);
    assert!(!env.d("dev/null").exists());
    assert!(!env.d("dev/sda").exists());
    assert!(!env.d("dev/kmsg").exists());
    let wh = md(&env.d("dev/wh"));
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    let p = md(&env.d("run/pipe"));
    assert!(p.file_type().is_fifo());
    assert_eq!(p.mode() & 0o7777, 0o620);
    assert_eq!((p.uid(), p.gid()), (5, 6));
    assert_eq!(p.mtime(), 1_000_000);
    env.assert_outside_unchanged();
}

#[test]
fn setuid_and_setgid_are_stripped_by_default() {
    let layer = tar(&[
        file("bin/su", b"x").mode(0o4755),
        file("bin/wall", b"x").mode(0o2755),
        file("bin/both", b"x").mode(0o6711).owner(0, 5),
        file("bin/plain", b"x").mode(0o755),
        dir("shared").mode(0o2775),
        dir("tmp").mode(0o1777),
        fifo("p").mode(0o4644),
    ]);
    let env = env();
    let stats = env.unpack(&layer).expect("unpack");
    let mode = |p: &str| md(&env.d(p)).mode() & 0o7777;
    assert_eq!(mode("bin/su"), 0o755);
    assert_eq!(mode("bin/wall"), 0o755);
    assert_eq!(mode("bin/both"), 0o711);
    assert_eq!(mode("bin/plain"), 0o755);
    assert_eq!(mode("shared"), 0o2775, "directories keep setgid");
    assert_eq!(mode("tmp"), 0o1777, "sticky bit is kept");
    assert_eq!(mode("p"), 0o644);
    assert_eq!(stats.stripped_privileged, 4);

    let env = self::env();
    let opts = UnpackOptions {
        preserve_privileged_bits: true,
        ..UnpackOptions::default()
    };
    let stats = env.unpack_with(&layer, &opts).expect("unpack");
    let mode = |p: &str| md(&env.d(p)).mode() & 0o7777;
    assert_eq!(mode("bin/su"), 0o4755);
    assert_eq!(mode("bin/wall"), 0o2755);
    assert_eq!(mode("bin/both"), 0o6711);
    assert_eq!(md(&env.d("bin/both")).gid(), 5);
    assert_eq!(mode("shared"), 0o2775);
    assert_eq!(mode("p"), 0o4644);
    assert_eq!(stats.stripped_privileged, 0);
}

/// A valid v2 `security.capability` value granting cap_net_bind_service.
const CAP_NET_BIND: &[u8] = &[
    0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

#[test]
fn file_capabilities_are_stripped_by_default() {
    let layer = tar(&[
        file("bin/ping", b"x")
            .mode(0o755)
            .pax("SCHILY.xattr.security.capability", CAP_NET_BIND)
            .pax("SCHILY.xattr.user.note", b"hello"),
        file("bin/other", b"x").pax(
            "SCHILY.xattr.security.selinux",
            b"system_u:object_r:bin_t:s0",
        ),
        file("bin/acl", b"x").pax("SCHILY.xattr.system.posix_acl_access", b"\x02\x00\x00\x00"),
        dir("d").pax("SCHILY.xattr.user.dir", b"v"),
    ]);
    let env = env();
    let stats = env.unpack(&layer).expect("unpack");
    assert_eq!(xattr(&env.d("bin/ping"), "security.capability"), None);
    assert_eq!(
        xattr(&env.d("bin/ping"), "user.note"),
        Some(b"hello".to_vec())
    );
    assert_eq!(xattr(&env.d("d"), "user.dir"), Some(b"v".to_vec()));
    assert_ne!(
        xattr(&env.d("bin/other"), "security.selinux").as_deref(),
        Some(b"system_u:object_r:bin_t:s0".as_slice())
    );
    assert_eq!(xattr(&env.d("bin/acl"), "system.posix_acl_access"), None);
    assert_eq!(stats.stripped_privileged, 1);

    let env = self::env();
    let opts = UnpackOptions {
        preserve_privileged_bits: true,
        ..UnpackOptions::default()
    };
    let stats = env.unpack_with(&layer, &opts).expect("unpack");
    assert_eq!(
        xattr(&env.d("bin/ping"), "security.capability"),
        Some(CAP_NET_BIND.to_vec())
    );
    assert_eq!(stats.stripped_privileged, 0);
}

#[test]
fn trusted_xattrs_are_refused() {
    for name in [
        "trusted.overlay.opaque",
        "trusted.overlay.redirect",
        "trusted.foo",
    ] {
        for e in [
            dir("d").pax(&format!("SCHILY.xattr.{name}"), b"y"),
            file("f", b"x").pax(&format!("SCHILY.xattr.{name}"), b"y"),
            file(".wh.f", b"").pax(&format!("SCHILY.xattr.{name}"), b"y"),
        ] {
            let env = env();
            let (_, rule) = entry_rule(env.unpack(&tar(&[e])));
            assert_eq!(rule, format!("xattr {name} is not allowed"));
            assert_eq!(xattr(&env.d("d"), name), None);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Limits

#[test]
fn a_header_claiming_a_huge_file_is_refused_at_once() {
    let env = env();
    let mut bytes = Vec::new();
    append(&mut bytes, &file("big", b"").size(1 << 40));
    // No data follows: the check must happen before anything is read or written.
    let err = env.unpack(&bytes).expect_err("must fail");
    assert!(
        matches!(err, UnpackError::TooLarge { limit } if limit == 64 << 30),
        "{err:?}"
    );
    assert!(!env.d("big").exists());
}

#[test]
fn content_beyond_max_tar_bytes_is_refused() {
    let opts = UnpackOptions {
        max_tar_bytes: 1 << 20,
        ..UnpackOptions::default()
    };
    // One file bigger than the budget: refused before it is created.
    let env = env();
    let err = env
        .unpack_with(&tar(&[file("big", &vec![7u8; 2 << 20])]), &opts)
        .expect_err("must fail");
    assert!(
        matches!(err, UnpackError::TooLarge { limit: 1048576 }),
        "{err:?}"
    );
    assert!(!env.d("big").exists());

    // Many small files adding up.
    let env = self::env();
    let files: Vec<E> = (0..300)
        .map(|i| file(&format!("f{i}"), &[1u8; 4000]))
        .collect();
    let err = env.unpack_with(&tar(&files), &opts).expect_err("must fail");
    assert!(matches!(err, UnpackError::TooLarge { .. }), "{err:?}");
}

/// A reader that never ends, counting what was pulled from it.
struct Endless<R> {
    inner: R,
    pulled: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Endless<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pulled.set(self.pulled.get() + n as u64);
        Ok(n)
    }
}

#[test]
fn an_endless_stream_is_cut_off_at_the_limit() {
    let opts = UnpackOptions {
        max_tar_bytes: 4 << 20,
        ..UnpackOptions::default()
    };
    // A file claiming 1 GiB whose data never ends: refused before its data is read.
    let env = env();
    let mut head = Vec::new();
    append(&mut head, &file("a", b"").size(1 << 30));
    let pulled = std::rc::Rc::new(std::cell::Cell::new(0));
    let stream = Endless {
        inner: head.as_slice().chain(io::repeat(b'z')),
        pulled: pulled.clone(),
    };
    let err = unpack_layer(stream, &env.dest, &opts).expect_err("must fail");
    assert!(matches!(err, UnpackError::TooLarge { .. }), "{err:?}");
    assert!(pulled.get() <= 64 << 10, "read {} bytes", pulled.get());
    assert!(!env.d("a").exists());

    // Endless garbage after the end-of-archive marker.
    let env = self::env();
    let pulled = std::rc::Rc::new(std::cell::Cell::new(0));
    let layer = tar(&[file("a", b"x")]);
    let stream = Endless {
        inner: layer.as_slice().chain(io::repeat(0xAA)),
        pulled: pulled.clone(),
    };
    let err = unpack_layer(stream, &env.dest, &opts).expect_err("must fail");
    assert!(
        matches!(err, UnpackError::TooLarge { limit } if limit == 4 << 20),
        "{err:?}"
    );
    assert_eq!(pulled.get(), (4 << 20) + 1);
}

#[test]
fn a_gnu_long_name_bomb_is_not_buffered() {
    // A long name claiming 8 GiB followed by endless bytes: the default 64 GiB budget would let
    // it through, the per-entry header cap must not.
    let env = env();
    let mut head = Vec::new();
    head.extend_from_slice(header(b"././@LongLink", b'L', 8 << 30).as_bytes());
    let pulled = std::rc::Rc::new(std::cell::Cell::new(0));
    let stream = Endless {
        inner: head.as_slice().chain(io::repeat(b'a')),
        pulled: pulled.clone(),
    };
    let err = unpack_layer(stream, &env.dest, &UnpackOptions::default()).expect_err("must fail");
    assert!(
        matches!(err, UnpackError::Malformed(ref m) if m.contains("extension headers")),
        "{err:?}"
    );
    assert!(pulled.get() < 17 << 20, "read {} bytes", pulled.get());

    // Same with a PAX header.
    let env = self::env();
    let mut head = Vec::new();
    head.extend_from_slice(header(b"././@PaxHeader", b'x', 8 << 30).as_bytes());
    let stream = head.as_slice().chain(io::repeat(b'a'));
    let err = unpack_layer(stream, &env.dest, &UnpackOptions::default()).expect_err("must fail");
    assert!(matches!(err, UnpackError::Malformed(_)), "{err:?}");
}

#[test]
fn too_many_entries_are_refused() {
    let opts = UnpackOptions {
        max_entries: 10,
        ..UnpackOptions::default()
    };
    let env = env();
    let ten: Vec<E> = (0..10).map(|i| file(&format!("f{i}"), b"")).collect();
    let stats = env
        .unpack_with(&tar(&ten), &opts)
        .expect("ten entries are fine");
    assert_eq!(stats.entries, 10);

    let env = self::env();
    let eleven: Vec<E> = (0..11).map(|i| file(&format!("f{i}"), b"")).collect();
    let err = env
        .unpack_with(&tar(&eleven), &opts)
        .expect_err("must fail");
    assert!(
        matches!(err, UnpackError::TooManyEntries { limit: 10 }),
        "{err:?}"
    );
}

#[test]
fn free_space_reserve_is_enforced() {
    let env = env();
    let opts = UnpackOptions {
        min_free_bytes: u64::MAX,
        ..UnpackOptions::default()
    };
    let err = env
        .unpack_with(&tar(&[file("a", b"x")]), &opts)
        .expect_err("must fail");
    assert!(matches!(err, UnpackError::NoSpace { .. }), "{err:?}");
    assert!(err.is_no_space());
    assert!(err.to_string().contains("bytes must stay free"));
    assert!(
        err.to_string().contains("min_free_bytes"),
        "names the setting: {err}"
    );

    let io = UnpackError::Io {
        entry: "x".into(),
        op: "write file",
        source: io::Error::from_raw_os_error(libc::EDQUOT),
    };
    assert!(io.is_no_space());
    let other = UnpackError::Io {
        entry: "x".into(),
        op: "write file",
        source: io::Error::from_raw_os_error(libc::EIO),
    };
    assert!(!other.is_no_space());

    // 0 disables the check.
    let env = self::env();
    let opts = UnpackOptions {
        min_free_bytes: 0,
        ..UnpackOptions::default()
    };
    env.unpack_with(&tar(&[file("a", &vec![1u8; 2 << 20])]), &opts)
        .expect("unpack");
}

#[test]
fn paths_longer_than_path_max_are_refused() {
    let env = env();
    let name = "d/".repeat(2100) + "f";
    assert_rule(
        env.unpack(&tar(&[file("x", b"").pax("path", name.as_bytes())])),
        "path is longer than 4096 bytes",
    );
}

// ---------------------------------------------------------------------------------------------
// Names, replacement, structure

#[test]
fn long_names_via_gnu_and_pax() {
    let env = env();
    let gnu = format!("{}/gnu-file", "g".repeat(150));
    let pax = format!("{}/{}/pax-file", "p".repeat(120), "q".repeat(200));
    let pax_dir = format!("{}/", "r".repeat(250));
    env.unpack(&tar(&[
        file(&gnu, b"gnu").longname(),
        file("short", b"pax").pax("path", pax.as_bytes()),
        dir("x").pax("path", pax_dir.as_bytes()).mode(0o710),
        hardlink("hl", "ignored").pax("linkpath", pax.as_bytes()),
        hardlink(&format!("{}/l", "h".repeat(120)), &gnu)
            .longname()
            .longlink(),
    ]))
    .expect("unpack");
    assert_eq!(fs::read(env.d(&gnu)).expect("read"), b"gnu");
    assert_eq!(fs::read(env.d(&pax)).expect("read"), b"pax");
    assert!(!env.d("short").exists());
    assert_eq!(md(&env.d(&pax_dir)).mode() & 0o7777, 0o710);
    assert_eq!(md(&env.d("hl")).ino(), md(&env.d(&pax)).ino());
    assert_eq!(
        md(&env.d(&format!("{}/l", "h".repeat(120)))).ino(),
        md(&env.d(&gnu)).ino()
    );
    env.assert_outside_unchanged();
}

#[test]
fn directories_and_files_replace_each_other() {
    let env = env();
    env.unpack(&tar(&[
        dir("d"),
        file("d/x", b"x"),
        dir("d/sub"),
        file("d/sub/y", b"y"),
        symlink("d/sub/link", "/etc"),
        fifo("d/sub/p"),
        file("d", b"now a file"),
        file("f", b"a file"),
        dir("f").mode(0o750),
        file("f/z", b"z"),
        dir("m"),
        file("m/keep", b"k"),
        dir("m").mode(0o700).owner(9, 9),
        dir("s"),
        symlink("s", "/"),
    ]))
    .expect("unpack");
    assert_eq!(fs::read(env.d("d")).expect("read"), b"now a file");
    assert!(md(&env.d("f")).is_dir());
    assert_eq!(md(&env.d("f")).mode() & 0o7777, 0o750);
    assert_eq!(fs::read(env.d("f/z")).expect("read"), b"z");
    assert_eq!(fs::read(env.d("m/keep")).expect("read"), b"k");
    assert_eq!(md(&env.d("m")).mode() & 0o7777, 0o700);
    assert_eq!(md(&env.d("m")).uid(), 9);
    assert!(md(&env.d("s")).file_type().is_symlink());
    env.assert_outside_unchanged();
}

#[test]
fn a_deep_directory_tree_is_replaced_without_running_out_of_fds() {
    let env = env();
    let deep = "a/".repeat(1500) + "leaf";
    let mut entries = vec![file("x", b"").pax("path", deep.as_bytes())];
    // Siblings along the way so removal has work at many levels.
    for depth in [1usize, 10, 700, 1499] {
        let p = "a/".repeat(depth) + "side";
        entries.push(file("x", b"s").pax("path", p.as_bytes()));
    }
    entries.push(file("a", b"flat now"));
    entries.push(file("after/a/b", b"fine"));
    env.unpack(&tar(&entries)).expect("unpack");
    assert_eq!(fs::read(env.d("a")).expect("read"), b"flat now");
    assert_eq!(fs::read(env.d("after/a/b")).expect("read"), b"fine");
}

#[test]
fn a_parent_that_is_a_file_is_refused() {
    let env = env();
    assert_rule(
        env.unpack(&tar(&[file("a", b"x"), file("a/b", b"y")])),
        "parent directory a is not a directory",
    );
    let env = self::env();
    assert_rule(
        env.unpack(&tar(&[dir("d"), fifo("d/p"), file("d/p/q/r", b"y")])),
        "parent directory d/p is not a directory",
    );
    let env = self::env();
    assert_rule(
        env.unpack(&tar(&[file("a", b"x"), hardlink("a/b", "a")])),
        "parent directory a is not a directory",
    );
}

#[test]
fn the_root_entry_applies_to_the_root() {
    let env = env();
    env.unpack(&tar(&[
        dir("./").mode(0o750).owner(0, 3).mtime(1_234),
        file("x", b""),
        dir("/").mode(0o751).owner(0, 3),
    ]))
    .expect("unpack");
    let root = md(&env.dest);
    assert_eq!(root.mode() & 0o7777, 0o751);
    assert_eq!(root.gid(), 3);
    assert_eq!(root.mtime(), 1_600_000_000);

    // (`file("./")` would be a directory: old-style regular files ending in `/` are.)
    for e in [
        file(".", b"x"),
        file("a/..", b"x"),
        symlink(".", "/etc"),
        hardlink("/", "x"),
        fifo("a/.."),
    ] {
        let env = self::env();
        assert_rule(
            env.unpack(&tar(&[file("x", b""), e])),
            "entry would replace the layer root",
        );
    }
}

#[test]
fn old_style_entries() {
    let env = env();
    env.unpack(&tar(&[
        entry(b"olddir/", b'\0').mode(0o700),
        {
            let mut e = entry(b"olddir/file", b'\0');
            e.data = b"old".to_vec();
            e
        },
        {
            let mut e = entry(b"contig", b'7');
            e.data = b"contiguous".to_vec();
            e
        },
    ]))
    .expect("unpack");
    assert!(md(&env.d("olddir")).is_dir());
    assert_eq!(md(&env.d("olddir")).mode() & 0o7777, 0o700);
    assert_eq!(fs::read(env.d("olddir/file")).expect("read"), b"old");
    assert_eq!(fs::read(env.d("contig")).expect("read"), b"contiguous");
}

#[test]
fn unknown_entry_types_are_refused_and_global_headers_skipped() {
    for kind in [b'V', b'D', b'M', b'N', b'A', b'9'] {
        let env = env();
        let (_, rule) = entry_rule(env.unpack(&tar(&[entry(b"thing", kind)])));
        assert_eq!(rule, format!("unsupported entry type '{}'", kind as char));
    }
    let env = env();
    let mut g = entry(b"pax_global_header", b'g');
    g.data = pax_record(b"comment", b"hello");
    let stats = env.unpack(&tar(&[g, file("a", b"x")])).expect("unpack");
    assert_eq!(stats.entries, 2);
    assert!(!env.d("pax_global_header").exists());
    assert!(env.d("a").exists());
}

#[test]
fn pax_sparse_files_are_refused() {
    let env = env();
    assert_rule(
        env.unpack(&tar(&[
            file("GNUSparseFile.0/f", b"").pax("GNU.sparse.major", b"1")
        ])),
        "PAX sparse files",
    );
}

fn octal(field: &mut [u8], value: u64) {
    let s = format!("{:0width$o}", value, width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}

/// A GNU sparse entry: `(offset, data)` chunks, a final size.
fn sparse_entry(name: &str, chunks: &[(u64, &[u8])], real_size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    let stored: usize = chunks.iter().map(|(_, d)| d.len()).sum();
    {
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        let mut slots: Vec<(u64, u64)> = chunks.iter().map(|(o, d)| (*o, d.len() as u64)).collect();
        slots.push((real_size, 0));
        assert!(slots.len() <= 4);
        for (slot, (off, len)) in gnu.sparse.iter_mut().zip(slots) {
            octal(&mut slot.offset, off);
            octal(&mut slot.numbytes, len);
        }
        octal(&mut gnu.realsize, real_size);
    }
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    h.set_size(stored as u64);
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    for (_, d) in chunks {
        // Each chunk is block-aligned in the archive.
        push_data(&mut out, d);
    }
    out
}

#[test]
fn gnu_sparse_files_keep_their_holes() {
    let env = env();
    let mut bytes = sparse_entry(
        "sparse",
        &[(0, &[b'A'; 512]), (2 << 20, &[b'B'; 1024])],
        3 << 20,
    );
    bytes.extend([0u8; 1024]);
    let stats = env.unpack(&bytes).expect("unpack");
    let m = md(&env.d("sparse"));
    assert_eq!(m.len(), 3 << 20);
    assert_eq!(stats.content_bytes, 3 << 20);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "holes were written as data: {} blocks",
        m.blocks()
    );
    let data = fs::read(env.d("sparse")).expect("read");
    assert!(data[..512].iter().all(|b| *b == b'A'));
    assert!(data[512..2 << 20].iter().all(|b| *b == 0));
    assert!(data[2 << 20..(2 << 20) + 1024].iter().all(|b| *b == b'B'));
    assert!(data[(2 << 20) + 1024..].iter().all(|b| *b == 0));

    // "8 GiB of holes" is a bomb like any other when the budget is 1 GiB.
    let env = self::env();
    let mut bytes = sparse_entry("bomb", &[(0, &[1u8; 512])], (8 << 30) - 512);
    bytes.extend([0u8; 1024]);
    let opts = UnpackOptions {
        max_tar_bytes: 1 << 30,
        ..UnpackOptions::default()
    };
    let err = env.unpack_with(&bytes, &opts).expect_err("must fail");
    assert!(matches!(err, UnpackError::TooLarge { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Stream integrity

#[test]
fn entries_after_the_end_of_archive_are_ignored() {
    let env = env();
    let mut bytes = tar(&[file("a", b"first")]);
    let second = tar(&[file("b", b"after the end")]);
    bytes.extend_from_slice(&second);
    bytes.extend_from_slice(b"trailing junk that is not a tar at all");
    let stats = env.unpack(&bytes).expect("unpack");
    assert_eq!(stats.entries, 1);
    assert_eq!(
        stats.tar_bytes,
        bytes.len() as u64,
        "the whole stream is read"
    );
    assert!(env.d("a").exists());
    assert!(!env.d("b").exists());
}

/// A small but varied archive for truncation and corruption tests.
fn varied_layer() -> Vec<u8> {
    tar(&[
        dir("etc").pax("mtime", b"1600000000.5"),
        file("etc/hosts", &[b'h'; 700]).pax("SCHILY.xattr.user.x", b"1"),
        file(&format!("{}/long", "l".repeat(120)), b"long").longname(),
        symlink("etc/link", "hosts"),
        hardlink("etc/hard", "etc/hosts"),
        file("etc/.wh.old", b""),
        fifo("p"),
        file("big", &[b'b'; 1300]),
    ])
}

#[test]
fn truncated_streams_fail_cleanly() {
    let full = varied_layer();
    // End of the last entry's (padded) data: cuts before it lose data.
    let content_end = full.len() - 1024;
    let tmp = tempfile::tempdir().expect("tempdir");
    // Every block boundary and its neighbours, and a stride through everything else.
    let mut cuts: Vec<usize> = (0..full.len()).step_by(37).collect();
    for b in (0..=full.len()).step_by(512) {
        cuts.extend([b.saturating_sub(1), b, b + 1]);
    }
    cuts.retain(|c| *c < full.len());
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        let dest = tmp.path().join(format!("cut{cut}"));
        fs::create_dir(&dest).expect("mkdir");
        let result = unpack_layer(&full[..cut], &dest, &UnpackOptions::default());
        if cut < content_end && cut % 512 != 0 {
            match result {
                Err(UnpackError::Malformed(_)) | Err(UnpackError::Io { .. }) => {}
                other => panic!("cut at {cut}: expected an error, got {other:?}"),
            }
        }
        fs::remove_dir_all(&dest).expect("cleanup");
    }
    let dest = tmp.path().join("full");
    fs::create_dir(&dest).expect("mkdir");
    let stats =
        unpack_layer(full.as_slice(), &dest, &UnpackOptions::default()).expect("full layer");
    assert_eq!(stats.entries, 8);
    assert_eq!(stats.tar_bytes, full.len() as u64);
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn garbage_never_panics_or_escapes() {
    let env = env();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    // Inside dest (which the snapshot skips): escapes beyond dest show in the snapshot,
    // escapes out of a run's root into dest/N are checked below.
    let scratch = env.dest.clone();
    // Each run gets scratch/N/root, removed afterwards: anything left in scratch/N escaped.
    let run = |bytes: &[u8], i: usize| {
        let dest = scratch.join(i.to_string()).join("root");
        fs::create_dir_all(&dest).expect("mkdir");
        let _ = unpack_layer(bytes, &dest, &UnpackOptions::default());
        fs::remove_dir_all(&dest).expect("cleanup");
    };
    // Pure noise.
    for i in 0..200 {
        let len = rng.below(4096) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        run(&bytes, i);
    }
    // Headers with random fields but a valid checksum.
    for i in 200..1200 {
        let mut block = [0u8; 512];
        for b in block.iter_mut() {
            *b = rng.next() as u8;
        }
        let mut h = tar::Header::new_old();
        h.as_mut_bytes().copy_from_slice(&block);
        if rng.below(2) == 0 {
            h.as_mut_bytes()[257..263].copy_from_slice(b"ustar\0");
            h.as_mut_bytes()[263..265].copy_from_slice(b"00");
        }
        let kinds = b"01234567xgLKSV\0";
        h.as_mut_bytes()[156] = kinds[rng.below(kinds.len() as u64) as usize];
        if rng.below(2) == 0 {
            h.set_size(rng.below(2048));
        }
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        let tail = rng.below(3000) as usize;
        bytes.extend((0..tail).map(|_| rng.next() as u8));
        run(&bytes, i);
    }
    // A valid archive with random bytes flipped, checksums repaired.
    let base = varied_layer();
    for i in 1200..1700 {
        let mut bytes = base.clone();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] = rng.next() as u8;
        }
        for block in bytes.chunks_mut(512) {
            if block.len() == 512 && block.iter().any(|b| *b != 0) {
                let mut h = tar::Header::new_old();
                h.as_mut_bytes().copy_from_slice(block);
                if h.cksum().is_ok() || rng.below(2) == 0 {
                    h.set_cksum();
                    block.copy_from_slice(h.as_bytes());
                }
            }
        }
        run(&bytes, i);
    }
    for run_dir in fs::read_dir(&scratch).expect("read_dir") {
        let run_dir = run_dir.expect("dir entry").path();
        let left: Vec<_> = fs::read_dir(&run_dir).expect("read_dir").collect();
        assert!(
            left.is_empty(),
            "{} escaped its root: {left:?}",
            run_dir.display()
        );
    }
    env.assert_outside_unchanged();
}

struct FailingReader {
    data: Vec<u8>,
    pos: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "gzip: corrupt deflate stream",
            ));
        }
        let n = buf.len().min(self.data.len() - self.pos).min(100);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn errors_of_the_underlying_stream_surface_as_io_errors() {
    let env = env();
    let full = tar(&[file("a", &[1u8; 3000])]);
    let reader = FailingReader {
        data: full[..1500].to_vec(),
        pos: 0,
    };
    let err = unpack_layer(reader, &env.dest, &UnpackOptions::default()).expect_err("must fail");
    match err {
        UnpackError::Io { op, ref source, .. } => {
            assert_eq!(op, "read layer stream");
            assert!(source.to_string().contains("corrupt deflate"));
        }
        other => panic!("expected an io error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata

#[test]
fn ownership_mode_and_times_are_applied() {
    let env = env();
    env.unpack(&tar(&[
        file("f", b"x")
            .mode(0o640)
            .owner(1000, 2000)
            .mtime(1_234_567_890),
        file("nanos", b"x")
            .pax("mtime", b"1600000000.123456789")
            .pax("atime", b"1500000000.5"),
        file("paxids", b"x")
            .pax("uid", b"3000000000")
            .pax("gid", b"70000"),
        symlink("l", "f").owner(3, 4).mtime(1_000_000_001),
        dir("d").mode(0o711).owner(5, 6).mtime(1_000_000_002),
        file("exec", b"x").mode(0o100755),
    ]))
    .expect("unpack");
    let f = md(&env.d("f"));
    assert_eq!(f.mode() & 0o7777, 0o640);
    assert_eq!((f.uid(), f.gid()), (1000, 2000));
    assert_eq!(f.mtime(), 1_234_567_890);
    let n = md(&env.d("nanos"));
    assert_eq!((n.mtime(), n.mtime_nsec()), (1_600_000_000, 123_456_789));
    assert_eq!((n.atime(), n.atime_nsec()), (1_500_000_000, 500_000_000));
    let p = md(&env.d("paxids"));
    assert_eq!((p.uid(), p.gid()), (3_000_000_000, 70_000));
    let l = md(&env.d("l"));
    assert!(l.file_type().is_symlink());
    assert_eq!((l.uid(), l.gid()), (3, 4));
    assert_eq!(l.mtime(), 1_000_000_001);
    let d = md(&env.d("d"));
    assert_eq!(d.mode() & 0o7777, 0o711);
    assert_eq!((d.uid(), d.gid()), (5, 6));
    assert_eq!(d.mtime(), 1_000_000_002);
    assert_eq!(md(&env.d("exec")).mode() & 0o7777, 0o755);
}

#[test]
fn ids_out_of_range_are_refused() {
    for (key, value) in [
        ("uid", "4294967295"),
        ("uid", "1099511627776"),
        ("gid", "4294967295"),
    ] {
        let env = env();
        assert_rule(
            env.unpack(&tar(&[file("f", b"x").pax(key, value.as_bytes())])),
            &format!("{key} {value} is out of range"),
        );
    }
}

#[test]
fn directory_times_are_set_after_their_content() {
    let env = env();
    env.unpack(&tar(&[
        dir("d").mtime(1_000),
        file("d/a", b"a"),
        dir("d/e").mtime(2_000),
        file("d/e/f", b"f"),
        symlink("d/e/l", "f"),
        file("d/e/.wh.gone", b""),
        file("d/.wh..wh..opq", b""),
        // A directory whose entry comes after its children.
        file("late/child", b"c"),
        dir("late").mtime(3_000),
        // A directory listed twice: the later entry wins.
        dir("twice").mtime(4_000),
        dir("twice").mtime(5_000),
        file("twice/x", b""),
    ]))
    .expect("unpack");
    assert_eq!(md(&env.d("d")).mtime(), 1_000);
    assert_eq!(md(&env.d("d/e")).mtime(), 2_000);
    assert_eq!(md(&env.d("late")).mtime(), 3_000);
    assert_eq!(md(&env.d("twice")).mtime(), 5_000);
}

// ---------------------------------------------------------------------------------------------
// A normal layer

#[test]
fn a_busybox_like_layer() {
    let env = env();
    let busybox = [0x7fu8, b'E', b'L', b'F'].repeat(5000);
    let mut entries = vec![
        dir("./").mode(0o755),
        dir("bin/"),
        file("bin/busybox", &busybox).mode(0o755),
    ];
    for applet in ["sh", "ls", "cat", "echo", "mount"] {
        entries.push(hardlink(&format!("bin/{applet}"), "bin/busybox").mode(0o755));
    }
    entries.extend([
        dir("etc/"),
        file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        ),
        file("etc/group", b"root:x:0:\n"),
        symlink("etc/mtab", "/proc/mounts"),
        dir("root/").mode(0o700),
        dir("tmp/").mode(0o1777),
        dir("usr/"),
        dir("usr/sbin/"),
        symlink("usr/sbin/init", "../../bin/busybox"),
        dir("var/"),
        dir("var/spool/"),
        dir("var/spool/mail/").owner(8, 12),
        dir("home/"),
        dir("home/user/").owner(1000, 1000).mode(0o750),
        file("home/user/.profile", b"export PS1='$ '\n").owner(1000, 1000),
    ]);
    let layer = tar(&entries);
    let stats = env.unpack(&layer).expect("unpack");
    assert_eq!(stats.entries, entries.len() as u64);
    assert_eq!(stats.tar_bytes, layer.len() as u64);
    let content: usize = entries
        .iter()
        .filter(|e| e.kind == b'0')
        .map(|e| e.data.len())
        .sum();
    assert_eq!(stats.content_bytes, content as u64);
    assert_eq!(stats.stripped_privileged, 0);
    assert_eq!(stats.skipped_devices, 0);
    assert_eq!(fs::read(env.d("bin/busybox")).expect("read"), busybox);
    assert_eq!(md(&env.d("bin/busybox")).nlink(), 6);
    assert_eq!(md(&env.d("bin/sh")).ino(), md(&env.d("bin/busybox")).ino());
    assert_eq!(md(&env.d("bin/sh")).mode() & 0o7777, 0o755);
    assert_eq!(
        fs::read_link(env.d("usr/sbin/init")).expect("readlink"),
        Path::new("../../bin/busybox")
    );
    assert_eq!(
        fs::read_link(env.d("etc/mtab")).expect("readlink"),
        Path::new("/proc/mounts")
    );
    assert_eq!(md(&env.d("tmp")).mode() & 0o7777, 0o1777);
    assert_eq!(md(&env.d("root")).mode() & 0o7777, 0o700);
    assert_eq!(md(&env.d("home/user")).uid(), 1000);
    assert_eq!(md(&env.d("var/spool/mail")).gid(), 12);
    assert_eq!(
        fs::read(env.d("home/user/.profile")).expect("read"),
        b"export PS1='$ '\n"
    );
    assert_eq!(md(&env.d("etc")).mtime(), 1_600_000_000);
    env.assert_outside_unchanged();
}

#[test]
fn an_empty_stream_is_an_empty_layer() {
    let env = env();
    let stats = env.unpack(&[]).expect("unpack");
    assert_eq!(stats.entries, 0);
    let stats = self::env().unpack(&[0u8; 10240]).expect("unpack");
    assert_eq!(stats.tar_bytes, 10240);
}

#[test]
fn many_small_files_in_one_directory() {
    let env = env();
    let mut entries = vec![dir("many")];
    entries.extend((0..5000).map(|i| file(&format!("many/f{i:05}"), b"0123456789")));
    let stats = env.unpack(&tar(&entries)).expect("unpack");
    assert_eq!(stats.entries, 5001);
    assert_eq!(stats.content_bytes, 50_000);
    assert_eq!(fs::read_dir(env.d("many")).expect("read_dir").count(), 5000);
}
