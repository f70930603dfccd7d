//! `DOCKER_BUILDKIT=0 docker build` against berth (issue 16): a multi-stage Dockerfile with
//! build args, COPY from the context and from a stage (owner and mode asked), ADD of a
//! local archive, metadata instructions; the image runs as built; a rebuild with nothing
//! changed takes every step from the cache and gives the same ID, a changed source file
//! only the steps after it; RUN has no network; a failing RUN, a parse error and
//! sources outside the context fail by name and tag nothing.

use std::fs;
use std::path::Path;
use std::process::Stdio;

use berth_tests::*;

fn docker_available() -> bool {
    if !have("docker") {
        eprintln!("docker CLI not installed; skipping");
        return false;
    }
    true
}

fn load_fixture(d: &Daemon) {
    let archive = fixtures().join("app-docker-save.tar");
    ok(d.docker(&["load", "-i", archive.to_str().expect("path")]));
}

/// `docker build` with the classic builder; its output (stdout and stderr) and status.
fn build(d: &Daemon, ctx: &Path, args: &[&str]) -> (bool, String) {
    let out = d
        .docker_cmd(&["build"])
        .args(args)
        .arg(ctx)
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run docker build");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir");
    }
    fs::write(path, text).expect("write");
}

fn image_id(d: &Daemon, name: &str) -> String {
    ok(d.docker(&["image", "inspect", name, "-f", "{{.Id}}"]))
        .trim()
        .to_string()
}

const DOCKERFILE: &str = r#"# A comment, then a global ARG used by FROM.
ARG BASE=fixture/app:1
FROM $BASE AS builder
ARG SUFFIX=default
WORKDIR /work
COPY src/ ./src/
RUN busybox cat src/a.txt src/b.txt > joined.txt \
 && echo "suffix=$SUFFIX" >> joined.txt
# No network in a RUN step unless the build asks for one: only lo.
RUN test "$(busybox ls /sys/class/net)" = lo

FROM fixture/app:1
LABEL org.example.name="demo app" org.example.tier=web
ENV GREETING=hello WHO=world
ENV BOTH="${GREETING} ${WHO}"
COPY --from=builder /work/joined.txt /data/
COPY --chown=1234:5678 --chmod=640 src/a.txt /data/owned.txt
COPY . /ctx/
ADD files.tar /unpacked/
EXPOSE 8080 9090/udp
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=2s CMD busybox true
USER 1234
# The fixture's ENTRYPOINT is /bin/sh -c: CMD is its script.
CMD ["echo $BOTH; busybox cat /data/joined.txt"]
"#;

fn context(dir: &Path) {
    write(&dir.join("Dockerfile"), DOCKERFILE);
    write(&dir.join("src/a.txt"), "alpha\n");
    write(&dir.join("src/b.txt"), "beta\n");
    write(&dir.join("secret.txt"), "not for the image\n");
    write(&dir.join(".dockerignore"), "secret.txt\n*.tmp\n");
    write(&dir.join("junk.tmp"), "ignored\n");
    // A local archive: ADD unpacks it.
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(9);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "inside/packed.txt", &b"unpacked\n"[..])
        .expect("tar");
    fs::write(dir.join("files.tar"), t.into_inner().expect("tar")).expect("write tar");
}

/// Now, as `docker events --since/--until` take it (seconds.nanoseconds).
fn unix_now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

#[test]
fn a_multi_stage_dockerfile_builds_runs_and_rebuilds_from_the_cache() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    load_fixture(&d);
    let ctx = tempfile::tempdir().expect("tempdir");
    context(ctx.path());

    let (built, out) = build(
        &d,
        ctx.path(),
        &[
            "-t",
            "demo:1",
            "-t",
            "demo:latest",
            "--build-arg",
            "SUFFIX=given",
        ],
    );
    assert!(built, "build failed:\n{out}");
    assert!(out.contains("Step 1/"), "{out}");
    assert!(out.contains("Successfully built"), "{out}");
    assert!(out.contains("Successfully tagged demo:1"), "{out}");
    let id = image_id(&d, "demo:1");
    assert_eq!(id, image_id(&d, "demo:latest"));

    // It runs as built.
    let run = ok(d.docker(&["run", "--rm", "demo:1"]));
    assert_eq!(run, "hello world\nalpha\nbeta\nsuffix=given\n");
    let stat = ok(d.docker(&[
        "run",
        "--rm",
        "--user",
        "0",
        "demo:1",
        "busybox stat -c '%u:%g %a' /data/owned.txt; busybox cat /unpacked/inside/packed.txt; busybox ls /ctx",
    ]));
    let mut lines = stat.lines();
    assert_eq!(lines.next(), Some("1234:5678 640"), "{stat}");
    assert_eq!(lines.next(), Some("unpacked"), "{stat}");
    let listed: Vec<&str> = lines.collect();
    assert!(
        listed.contains(&"Dockerfile") && listed.contains(&"src"),
        "{stat}"
    );
    assert!(
        !listed.contains(&"secret.txt") && !listed.contains(&"junk.tmp"),
        ".dockerignore'd files were copied: {stat}"
    );

    // The config as the Dockerfile says.
    let cfg = ok(d.docker(&[
        "image",
        "inspect",
        "demo:1",
        "-f",
        "{{json .Config.Env}}|{{json .Config.Labels}}|{{json .Config.ExposedPorts}}|{{.Config.User}}|{{.Config.StopSignal}}|{{json .Config.Healthcheck.Test}}|{{json .Config.Cmd}}",
    ]));
    assert!(cfg.contains(r#""GREETING=hello""#), "{cfg}");
    assert!(cfg.contains(r#""BOTH=hello world""#), "{cfg}");
    assert!(cfg.contains(r#""org.example.name":"demo app""#), "{cfg}");
    assert!(
        cfg.contains(r#""8080/tcp":{}"#) && cfg.contains(r#""9090/udp":{}"#),
        "{cfg}"
    );
    assert!(cfg.contains("|1234|SIGINT|"), "{cfg}");
    assert!(cfg.contains(r#"["CMD-SHELL","busybox true"]"#), "{cfg}");
    // The build arg reached RUN only: not in the image's environment.
    assert!(!cfg.contains("SUFFIX"), "{cfg}");
    let history = ok(d.docker(&["history", "--no-trunc", "demo:1"]));
    assert!(history.contains("COPY file:"), "{history}");
    assert!(
        history.contains("#(nop)  ENV GREETING=hello WHO=world"),
        "{history}"
    );

    // Nothing changed: every step from the cache, the same image, and no step
    // container made (only COPY --from reads its stage through a container).
    let since = unix_now();
    let (built, again) = build(
        &d,
        ctx.path(),
        &["-t", "demo:1", "--build-arg", "SUFFIX=given"],
    );
    assert!(built, "rebuild failed:\n{again}");
    let steps = again.matches("Step ").count();
    let cached = again.matches("Using cache").count();
    assert!(!again.contains("Running in"), "a step ran again:\n{again}");
    // FROM lines are not cached steps: every other step is.
    assert_eq!(cached, steps - 2, "{again}");
    assert_eq!(image_id(&d, "demo:1"), id);
    let until = unix_now();
    let made = ok(d.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--format",
        r#"{{index .Actor.Attributes "com.berth.build"}}"#,
    ]));
    let made: Vec<&str> = made.lines().collect();
    assert_eq!(
        made,
        ["source"],
        "containers made by a rebuild from the cache"
    );

    // Another build arg: the RUN that uses it runs again, the steps before it do not.
    let (built, other) = build(
        &d,
        ctx.path(),
        &["-t", "demo:2", "--build-arg", "SUFFIX=other"],
    );
    assert!(built, "{other}");
    assert_ne!(image_id(&d, "demo:2"), id);
    assert!(ok(d.docker(&["run", "--rm", "demo:2"])).ends_with("suffix=other\n"));

    // One source file changed: the COPY of it and what follows are built again.
    write(&ctx.path().join("src/b.txt"), "gamma\n");
    let (built, changed) = build(
        &d,
        ctx.path(),
        &["-t", "demo:1", "--build-arg", "SUFFIX=given"],
    );
    assert!(built, "{changed}");
    assert!(changed.contains("Running in"), "{changed}");
    assert_ne!(image_id(&d, "demo:1"), id);
    assert_eq!(
        ok(d.docker(&["run", "--rm", "demo:1"])),
        "hello world\nalpha\ngamma\nsuffix=given\n"
    );
    // A file added, then removed again: the image has it, then is the one from before
    // (the daemon keeps this tag's context and brings it up to date at each build).
    let before = image_id(&d, "demo:1");
    write(&ctx.path().join("src/c.txt"), "new\n");
    let (built, added) = build(
        &d,
        ctx.path(),
        &["-t", "demo:1", "--build-arg", "SUFFIX=given"],
    );
    assert!(built, "{added}");
    let listed = ok(d.docker(&["run", "--rm", "demo:1", "busybox ls /ctx/src"]));
    assert_eq!(listed, "a.txt\nb.txt\nc.txt\n");
    fs::remove_file(ctx.path().join("src/c.txt")).expect("remove c.txt");
    let (built, removed) = build(
        &d,
        ctx.path(),
        &["-t", "demo:1", "--build-arg", "SUFFIX=given"],
    );
    assert!(built, "{removed}");
    assert!(!removed.contains("Running in"), "{removed}");
    assert_eq!(image_id(&d, "demo:1"), before);
    let listed = ok(d.docker(&["run", "--rm", "demo:1", "busybox ls /ctx/src"]));
    assert_eq!(listed, "a.txt\nb.txt\n");

    // `--no-cache` runs everything.
    let (built, fresh) = build(&d, ctx.path(), &["--no-cache", "-t", "demo:3"]);
    assert!(built && !fresh.contains("Using cache"), "{fresh}");

    // Intermediate containers are gone; intermediate images are listed with -a only.
    assert_eq!(ok(d.docker(&["ps", "-aq"])).trim(), "");
    let top = ok(d.docker(&["images", "-q"]));
    let all = ok(d.docker(&["images", "-aq"]));
    assert!(
        all.lines().count() > top.lines().count(),
        "{top}\n--\n{all}"
    );
    // The cache shows as Build Cache, and `builder prune -a` empties it: the next build
    // runs its steps again.
    let cache_count = |d: &Daemon| -> usize {
        let df = ok(d.docker(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]));
        df.lines()
            .find_map(|l| l.strip_prefix("Build Cache "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Build Cache row: {df}"))
    };
    assert!(cache_count(&d) > 5, "{}", cache_count(&d));
    // The contexts kept for the tags are listed too (BuildKit's type for them).
    let verbose = ok(d.docker(&["system", "df", "-v"]));
    assert!(verbose.contains("source.local"), "{verbose}");
    let pruned = ok(d.docker(&["builder", "prune", "-a", "-f"]));
    assert!(pruned.contains("Total"), "{pruned}");
    assert_eq!(cache_count(&d), 0);
    let verbose = ok(d.docker(&["system", "df", "-v"]));
    assert!(!verbose.contains("source.local"), "{verbose}");
    let (built, cold) = build(
        &d,
        ctx.path(),
        &["-t", "demo:4", "--build-arg", "SUFFIX=given"],
    );
    assert!(built && cold.contains("Running in"), "{cold}");
    assert_eq!(
        ok(d.docker(&["run", "--rm", "demo:4"])),
        "hello world\nalpha\ngamma\nsuffix=given\n"
    );
    // --target stops at a stage.
    let (built, out) = build(&d, ctx.path(), &["--target", "builder", "-t", "stage:1"]);
    assert!(built, "{out}");
    assert_eq!(
        ok(d.docker(&["run", "--rm", "stage:1", "busybox cat /work/joined.txt"])),
        "alpha\ngamma\nsuffix=default\n"
    );
}

#[test]
fn failing_steps_and_hostile_contexts_fail_by_name_and_tag_nothing() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    load_fixture(&d);
    let ctx = tempfile::tempdir().expect("tempdir");
    let dockerfile = ctx.path().join("Dockerfile");

    // A RUN that fails: Docker's words, the exit code, nothing tagged.
    write(&dockerfile, "FROM fixture/app:1\nRUN echo before; exit 3\n");
    let (built, out) = build(&d, ctx.path(), &["-t", "bad:1"]);
    assert!(!built, "{out}");
    assert!(out.contains("before"), "the step's output is shown: {out}");
    assert!(
        out.contains("The command '/bin/sh -c echo before; exit 3' returned a non-zero code: 3"),
        "{out}"
    );
    fails(d.docker(&["image", "inspect", "bad:1"]));
    // `--force-rm` leaves no container behind.
    let (_, _) = build(&d, ctx.path(), &["--force-rm", "-t", "bad:1"]);
    let before = ok(d.docker(&["ps", "-aq"])).lines().count();
    let (_, _) = build(&d, ctx.path(), &["--force-rm", "-t", "bad:1"]);
    assert_eq!(ok(d.docker(&["ps", "-aq"])).lines().count(), before);

    // A parse error names the line and the instruction.
    write(&dockerfile, "FROM fixture/app:1\nFOO bar\n");
    let (built, out) = build(&d, ctx.path(), &["-t", "bad:1"]);
    assert!(!built, "{out}");
    assert!(out.contains("unknown instruction: FOO"), "{out}");

    // Sources outside the context: a path climbing out and a symlink to the host's
    // files never reach the image.
    std::os::unix::fs::symlink("/etc/shadow", ctx.path().join("shadow")).expect("symlink");
    write(
        &dockerfile,
        "FROM fixture/app:1\nCOPY shadow /x\nCMD [\"busybox cat /x\"]\n",
    );
    // The symlink resolves inside the context (as if the context were `/`), where
    // there is no /etc/shadow: not found, named.
    let (built, out) = build(&d, ctx.path(), &["-t", "escape:1"]);
    assert!(!built && out.contains("shadow"), "{out}");
    write(
        &dockerfile,
        "FROM fixture/app:1\nCOPY ../../../../etc/passwd /x\n",
    );
    let (built, out) = build(&d, ctx.path(), &["-t", "escape:2"]);
    assert!(!built && out.contains("outside the build context"), "{out}");
    // What the builder does not do is refused by name.
    write(
        &dockerfile,
        "FROM fixture/app:1\nRUN --mount=type=cache,target=/c true\n",
    );
    let (built, out) = build(&d, ctx.path(), &["-t", "bad:2"]);
    assert!(!built && out.contains("RUN --mount"), "{out}");
    write(
        &dockerfile,
        "FROM fixture/app:1\nADD https://example.invalid/x /x\n",
    );
    let (built, out) = build(&d, ctx.path(), &["-t", "bad:3"]);
    assert!(!built && out.contains("ADD from a URL"), "{out}");
}

#[test]
fn berth_build_sends_the_context_as_dockerignore_says() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    load_fixture(&d);
    let ctx = tempfile::tempdir().expect("tempdir");
    let dir = ctx.path();
    write(
        &dir.join("build/app.Dockerfile"),
        "FROM fixture/app:1\nARG V\nCOPY . /ctx/\nRUN echo \"v=$V\" > /v\n",
    );
    write(&dir.join("logs/a.log"), "log\n");
    write(&dir.join("logs/keep.log"), "kept\n");
    write(&dir.join("main.txt"), "main\n");
    write(&dir.join(".dockerignore"), "logs\n!logs/keep.log\nbuild\n");
    let out = d.berth(&[
        "build",
        "-f",
        "build/app.Dockerfile",
        "-t",
        "mine:1",
        "--build-arg",
        "V=7",
        "--label",
        "a=b",
        dir.to_str().expect("path"),
    ]);
    let text = ok(out);
    assert!(text.contains("Successfully tagged mine:1"), "{text}");
    let listed = ok(d.docker(&[
        "run",
        "--rm",
        "mine:1",
        "cd /ctx && busybox find . -type f | busybox sort; busybox cat /v",
    ]));
    // The Dockerfile is sent although ignored (the build reads it) but not copied (as
    // Docker's daemon drops it); the exception comes back.
    assert_eq!(
        listed,
        "./.dockerignore\n./logs/keep.log\n./main.txt\nv=7\n"
    );
    assert_eq!(
        ok(d.docker(&[
            "image",
            "inspect",
            "mine:1",
            "-f",
            "{{index .Config.Labels \"a\"}}"
        ]))
        .trim(),
        "b"
    );
    // A failing build fails the command with the daemon's message.
    write(
        &dir.join("build/app.Dockerfile"),
        "FROM fixture/app:1\nRUN exit 4\n",
    );
    let err = fails(d.berth(&[
        "build",
        "-f",
        "build/app.Dockerfile",
        dir.to_str().expect("path"),
    ]));
    assert!(err.contains("returned a non-zero code: 4"), "{err}");
}

/// SOURCE_DATE_EPOCH: two daemons with their own state roots build the same context
/// (RUN writing files, COPY, metadata) to the same image ID; the times are the epoch's.
#[test]
fn a_build_at_source_date_epoch_gives_the_same_image_on_another_root() {
    if !docker_available() {
        return;
    }
    let ctx = tempfile::tempdir().expect("tempdir");
    write(
        &ctx.path().join("Dockerfile"),
        "FROM fixture/app:1 AS b\nRUN busybox mkdir -p /out && echo built > /out/f && busybox touch /out/g\n\
         FROM fixture/app:1\nCOPY --from=b /out /out\nCOPY src /src\nENV A=1\nWORKDIR /w\nCMD [\"busybox ls /out\"]\n",
    );
    write(&ctx.path().join("src/one.txt"), "one\n");
    let mut ids = Vec::new();
    for round in 0..2 {
        let d = Daemon::start();
        load_fixture(&d);
        if round == 1 {
            // Later file times on the second host.
            std::thread::sleep(std::time::Duration::from_millis(1100));
            write(&ctx.path().join("src/one.txt"), "one\n");
        }
        let (built, out) = build(
            &d,
            ctx.path(),
            &[
                "-t",
                "repro:1",
                "--build-arg",
                "SOURCE_DATE_EPOCH=1700000000",
            ],
        );
        assert!(built, "{out}");
        ids.push(image_id(&d, "repro:1"));
        let created = ok(d.docker(&["image", "inspect", "repro:1", "-f", "{{.Created}}"]));
        assert_eq!(created.trim(), "2023-11-14T22:13:20Z");
        let times = ok(d.docker(&[
            "run",
            "--rm",
            "repro:1",
            "busybox stat -c %Y /out/f /out/g /src/one.txt /w",
        ]));
        assert_eq!(times, "1700000000\n1700000000\n1700000000\n1700000000\n");
    }
    assert_eq!(ids[0], ids[1], "the same context built to different images");
}

/// A context larger than the daemon's `max_layer_bytes` is refused by name, and the
/// build leaves nothing behind in the state root.
#[test]
fn a_context_over_the_daemon_s_limit_is_refused_by_name() {
    if !docker_available() {
        return;
    }
    let cfg = tempfile::NamedTempFile::new().expect("config");
    fs::write(cfg.path(), "max_layer_bytes = 8000000\n").expect("write config");
    let d = Daemon::start_with(&["--config", cfg.path().to_str().expect("path")]);
    load_fixture(&d);
    let ctx = tempfile::tempdir().expect("tempdir");
    write(
        &ctx.path().join("Dockerfile"),
        "FROM fixture/app:1\nCOPY big /big\n",
    );
    fs::write(ctx.path().join("big"), vec![7u8; 9_000_000]).expect("write");
    let (built, out) = build(&d, ctx.path(), &["-t", "big:1"]);
    assert!(!built, "{out}");
    assert!(out.contains("max_layer_bytes"), "{out}");
    fails(d.docker(&["image", "inspect", "big:1"]));
    // berth's CLI streams the context: the daemon's refusal is what it says.
    let err = fails(d.berth(&["build", "-t", "big:2", ctx.path().to_str().expect("path")]));
    assert!(err.contains("max_layer_bytes"), "{err}");
    fails(d.docker(&["image", "inspect", "big:2"]));
    // Nothing but empty directories (`contexts/`) under builds/.
    fn files(dir: &Path, depth: usize, out: &mut Vec<std::path::PathBuf>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir || depth > 0 {
                out.push(e.path());
            }
            if is_dir {
                files(&e.path(), depth + 1, out);
            }
        }
    }
    let mut left = Vec::new();
    files(&d.root.join("builds"), 0, &mut left);
    assert!(left.is_empty(), "a build's files stayed: {left:?}");
}

#[test]
fn removing_a_built_image_removes_its_unused_intermediate_images() {
    if !docker_available() {
        return;
    }
    let d = Daemon::start();
    load_fixture(&d);
    let all = || {
        let mut ids: Vec<String> = ok(d.docker(&["images", "-aq", "--no-trunc"]))
            .lines()
            .map(str::to_string)
            .collect();
        ids.sort();
        ids
    };
    let before = all();
    let ctx = tempfile::tempdir().expect("tempdir");
    write(
        &ctx.path().join("Dockerfile"),
        "FROM fixture/app:1\nRUN echo one > /one\nENV STEP=two\nLABEL step=three\n",
    );
    for tag in ["chain:1", "kept:1"] {
        let (built, out) = build(&d, ctx.path(), &["--no-cache", "-t", tag]);
        assert!(built, "{out}");
    }
    // Three steps each: the image and two intermediate images.
    assert_eq!(all().len(), before.len() + 6);

    // Docker's rmi: the untagged parents nothing else uses go with the image.
    let out = ok(d.docker(&["rmi", "chain:1"]));
    assert_eq!(out.matches("Deleted: sha256:").count(), 3, "{out}");
    assert_eq!(all().len(), before.len() + 3);
    // --no-prune keeps them (dangling then, for `image prune`).
    let out = ok(d.docker(&["rmi", "--no-prune", "kept:1"]));
    assert_eq!(out.matches("Deleted: sha256:").count(), 1, "{out}");
    assert_eq!(all().len(), before.len() + 2);
    ok(d.docker(&["image", "prune", "-f"]));
    assert_eq!(all(), before);
}

#[test]
fn the_daemon_keeps_the_contexts_of_its_most_recent_tags_only() {
    if !docker_available() {
        return;
    }
    let cfg = tempfile::NamedTempFile::new().expect("config");
    fs::write(cfg.path(), "build_contexts_kept = 1\n").expect("write config");
    let d = Daemon::start_with(&["--config", cfg.path().to_str().expect("path")]);
    load_fixture(&d);
    let ctx = tempfile::tempdir().expect("tempdir");
    write(
        &ctx.path().join("Dockerfile"),
        "FROM fixture/app:1\nCOPY a.txt /a.txt\n",
    );
    write(&ctx.path().join("a.txt"), "a\n");
    // The kept contexts' IDs (the rows also say how long ago each was used, which
    // changes between two listings).
    let kept = || -> Vec<String> {
        ok(d.docker(&["system", "df", "-v"]))
            .lines()
            .filter(|l| l.contains("source.local"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    for tag in ["first:1", "second:1"] {
        let (built, out) = build(&d, ctx.path(), &["-t", tag]);
        assert!(built, "{out}");
    }
    let rows = kept();
    assert_eq!(rows.len(), 1, "{rows:?}");
    // The record names the tag (docs/ON-DISK.md).
    let records: Vec<String> = fs::read_dir(d.root.join("builds/contexts"))
        .expect("contexts")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| fs::read_to_string(e.path()).expect("record"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].contains(r#""tag":"second:1""#), "{records:?}");
    // The most recent one is kept: an untagged build keeps none.
    let (built, out) = build(&d, ctx.path(), &[]);
    assert!(built, "{out}");
    assert_eq!(kept(), rows);
}
