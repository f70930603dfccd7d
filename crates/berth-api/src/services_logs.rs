//! `GET /services/{id}/logs` and `GET /tasks/{id}/logs`: the logs of a service's tasks
//! (or of one task), as Docker's swarm router writes them (moby `daemon/cluster`
//! `ServiceLogs`, `api/server/router/swarm` `swarmLogs`, `httputils.WriteLogStream`).
//!
//! Each task is a container of this engine, so its logs are its container's, read by
//! [`Engine::read_logs_while`] on a thread of its own that hands the records over a
//! bounded channel. One merger takes them:
//! - History first: the records each task has now (`tail` counts per task, as swarmkit
//!   asks each task for its own tail), merged by their time; each task's own order is
//!   kept.
//! - With `follow`, then what the tasks write, as it comes; the tasks of the service are
//!   looked up every [`TASK_POLL`] and a task whose container started since is followed
//!   from its first line. A service's follow ends when the client goes away, the service
//!   is removed, or the node leaves the swarm; a task's when its container stops.
//!
//! Each record is one frame (the docker CLI parses one line per write): with `details`,
//! the line is prefixed by `com.docker.swarm.node.id=…,com.docker.swarm.service.id=…,
//! com.docker.swarm.task.id=… `, and with `timestamps` the time comes before that. The
//! stream is multiplexed unless the spec asks for a TTY (then raw, as Docker sends it).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use berth_engine::logs::{LogQuery, LogRecord, LogSink};
use berth_engine::services::TaskView;
use berth_engine::{Engine, EngineError};
use berth_types::ErrorKind;
use serde_json::Value;

use crate::containers::LogFrames;
use crate::error::ApiError;
use crate::hijack::{MULTIPLEXED, RAW};
use crate::images::blocking;
use crate::params::Params;
use crate::version::ApiVersion;

/// How often a follower looks for tasks started since, and whether the service remains.
const TASK_POLL: Duration = Duration::from_millis(500);

/// How long the merger sleeps when no task had anything new.
const IDLE: Duration = Duration::from_millis(50);

/// Records a task's reader may hold ahead of the merger.
const READER_QUEUE: usize = 64;

/// Records taken from one task in a row while following, before the next task's turn.
const FOLLOW_BATCH: usize = 256;

/// Docker's keys of a log line's context (`--details`).
const NODE_KEY: &str = "com.docker.swarm.node.id";
const SERVICE_KEY: &str = "com.docker.swarm.service.id";
const TASK_KEY: &str = "com.docker.swarm.task.id";

/// What the query asks for.
#[derive(Debug, Clone)]
struct Options {
    q: LogQuery,
    timestamps: bool,
    details: bool,
}

/// `stdout` and `stderr`; one of them is needed. Docker's swarm router checks this
/// first, and answers 500 (a plain error, where container logs answer 400).
fn streams(params: &Params) -> Result<(bool, bool), ApiError> {
    let stdout = params.bool("stdout")?;
    let stderr = params.bool("stderr")?;
    if !stdout && !stderr {
        return Err(ApiError::internal(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    Ok((stdout, stderr))
}

/// Parses the query as Docker's swarm router does: `stdout`, `stderr`, `follow`,
/// `since`, `tail`, `timestamps`, `details` (services take no `until`). Docker answers
/// a bad `tail` or `since` with a plain error too (500), in these words.
fn options(params: &Params) -> Result<Options, ApiError> {
    let (stdout, stderr) = streams(params)?;
    let tail = match params.non_empty("tail") {
        None | Some("all") => None,
        Some(t) => match t.parse::<i64>() {
            Ok(n) if n < 0 => return Err(ApiError::internal("negative tail values not supported")),
            Ok(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Err(_) => {
                return Err(ApiError::internal(
                    "tail value must be a positive integer or \"all\"",
                ))
            }
        },
    };
    let since = match params.non_empty("since").filter(|v| *v != "0") {
        None => None,
        Some(v) => Some(crate::events::parse_time(v).ok_or_else(|| {
            ApiError::internal(format!(
                "could not parse since timestamp: {v:?}: expected Unix seconds or RFC 3339"
            ))
        })?),
    };
    Ok(Options {
        q: LogQuery {
            stdout,
            stderr,
            since,
            until: None,
            tail,
            follow: params.bool("follow")?,
        },
        timestamps: params.bool("timestamps")?,
        details: params.bool("details")?,
    })
}

/// Whether a service spec's task template asks for a TTY (Docker then sends raw logs).
fn spec_tty(spec: &Value) -> bool {
    spec.pointer("/TaskTemplate/ContainerSpec/TTY")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Whose logs are asked for.
#[derive(Debug, Clone)]
enum Target {
    /// Every task of the service with this ID.
    Service(String),
    /// One task (its readers are given at the start; its follow ends with its container).
    Task,
}

/// One task whose container's log is read.
#[derive(Debug, Clone)]
struct Source {
    task_id: String,
    container_id: String,
    /// The line prefix of `--details`: Docker's context keys, sorted, then a space.
    details: String,
}

impl Source {
    /// The task's container's log, if it has a container.
    fn of(t: &TaskView) -> Option<Source> {
        let container_id = t.record.container_id.clone()?;
        // Sorted by key, as Docker writes them; IDs need no query escaping.
        let details = format!(
            "{NODE_KEY}={},{SERVICE_KEY}={},{TASK_KEY}={} ",
            t.node_id, t.record.service_id, t.record.id
        );
        Some(Source {
            task_id: t.record.id.clone(),
            container_id,
            details,
        })
    }
}

/// The tasks of service `service_id` with a container now, oldest first. Following, a
/// task whose container was not started yet is left for a later look (its reader would
/// find it stopped and end).
fn sources(
    engine: &Engine,
    service_id: &str,
    started_only: bool,
) -> Result<Vec<Source>, EngineError> {
    let mut tasks = engine.tasks(Some(service_id))?;
    tasks.sort_by_key(|t| t.record.created_at);
    Ok(tasks
        .iter()
        .filter(|t| !started_only || t.status.state != "starting")
        .filter_map(Source::of)
        .collect())
}

/// The task whose ID or unique ID prefix is `key`, in Docker's words when none or many.
fn find_task(engine: &Engine, key: &str) -> Result<TaskView, EngineError> {
    let mut matching: Vec<TaskView> = engine
        .tasks(None)?
        .into_iter()
        .filter(|t| t.record.id.starts_with(key))
        .collect();
    if let Some(i) = matching.iter().position(|t| t.record.id == key) {
        return Ok(matching.swap_remove(i));
    }
    match matching.len() {
        0 => Err(EngineError::not_found(format!("task {key} not found"))),
        1 => Ok(matching.swap_remove(0)),
        n => Err(EngineError::invalid(format!(
            "task {key} is ambiguous ({n} matches found)"
        ))),
    }
}

/// What a task's reader hands the merger.
enum Msg {
    Record(LogRecord),
    /// Everything the task's log held when the read started was given.
    CaughtUp,
}

/// A [`LogSink`] that hands records to the merger; fails once the merger is gone.
struct ToMerger(SyncSender<Msg>);

fn merger_gone() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "logs merger gone")
}

impl LogSink for ToMerger {
    fn record(&mut self, r: &LogRecord) -> std::io::Result<()> {
        self.0
            .send(Msg::Record(r.clone()))
            .map_err(|_| merger_gone())
    }

    fn caught_up(&mut self) -> std::io::Result<()> {
        self.0.send(Msg::CaughtUp).map_err(|_| merger_gone())
    }
}

/// A task being read: its channel and the record it offers the merge.
struct Reader {
    src: Source,
    rx: Receiver<Msg>,
    /// The next record of the history and its time (ns), once received.
    head: Option<(i64, LogRecord)>,
    /// Its history was all given (or the read ended).
    history_done: bool,
    /// Its reader ended (the container stopped, or was removed).
    ended: bool,
}

fn record_nanos(r: &LogRecord) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&r.time)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(i64::MIN)
}

/// Gives the records of every reader's history (what it sends before it is caught up)
/// to `emit`, oldest first: a record goes once every reader still in its history offers
/// one, so each reader's own order is kept and only one record per reader is held.
fn merge_history(
    readers: &mut [Reader],
    mut emit: impl FnMut(&Source, LogRecord) -> std::io::Result<()>,
) -> std::io::Result<()> {
    loop {
        for r in readers.iter_mut() {
            if r.history_done || r.head.is_some() {
                continue;
            }
            match r.rx.recv() {
                Ok(Msg::Record(rec)) => r.head = Some((record_nanos(&rec), rec)),
                Ok(Msg::CaughtUp) => r.history_done = true,
                Err(_) => {
                    r.history_done = true;
                    r.ended = true;
                }
            }
        }
        let next = readers
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.head.as_ref().map(|(t, _)| (*t, i)))
            .min();
        let Some((_, i)) = next else {
            return Ok(());
        };
        let r = &mut readers[i];
        if let Some((_, rec)) = r.head.take() {
            emit(&r.src, rec)?;
        }
    }
}

/// Merges the tasks' records into the client's frames.
struct Merger {
    engine: Engine,
    target: Target,
    opts: Options,
    frames: LogFrames,
    /// The response's channel, to see the client go while nothing is sent.
    client: tokio::sync::mpsc::Sender<Bytes>,
    /// Set when the merger ends: the readers' followers stop at their next poll.
    stop: Arc<AtomicBool>,
    readers: Vec<Reader>,
    /// Tasks read or being read.
    seen: HashSet<String>,
}

impl Drop for Merger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Merger {
    /// Starts reading `src` with `q` on a thread of its own.
    fn add(&mut self, src: Source, q: LogQuery) {
        let (tx, rx) = sync_channel(READER_QUEUE);
        let engine = self.engine.clone();
        let stop = Arc::clone(&self.stop);
        let cid = src.container_id.clone();
        let spawned = std::thread::Builder::new()
            .name("task-logs".into())
            .spawn(move || {
                let wanted = || !stop.load(Ordering::Relaxed);
                if let Err(e) = engine.read_logs_while(&cid, &q, &mut ToMerger(tx), &wanted) {
                    if e.kind != ErrorKind::Unavailable {
                        tracing::debug!(container.id = %cid, error = %e, "task logs not read");
                    }
                }
            });
        // A reader that did not start reads as one that ended (its sender is gone).
        if let Err(e) = spawned {
            tracing::warn!(task.id = %src.task_id, error = %e, "task logs reader not started");
        }
        self.seen.insert(src.task_id.clone());
        self.readers.push(Reader {
            src,
            rx,
            head: None,
            history_done: false,
            ended: false,
        });
    }

    /// Sends one record to the client, with its task's details when asked, and its time
    /// (which the frames put first) in Docker's fixed width: nine digits of fraction.
    fn emit(
        frames: &mut LogFrames,
        opts: &Options,
        src: &Source,
        mut r: LogRecord,
    ) -> std::io::Result<()> {
        if opts.details {
            r.log.insert_str(0, &src.details);
        }
        if opts.timestamps {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&r.time) {
                r.time = t
                    .with_timezone(&chrono::Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            }
        }
        frames.record(&r)
    }

    /// The history of every reader, merged by time; each reader's order is kept.
    fn history(&mut self) -> std::io::Result<()> {
        let (frames, opts) = (&mut self.frames, &self.opts);
        merge_history(&mut self.readers, |src, rec| {
            Self::emit(frames, opts, src, rec)
        })?;
        self.frames.caught_up()
    }

    /// Whether the target is still there; starts reading its tasks started since.
    fn look_for_tasks(&mut self) -> bool {
        let found = match &self.target {
            Target::Service(id) => self
                .engine
                .service(id)
                .and_then(|_| sources(&self.engine, id, true)),
            // One task: nothing new to find; its follow ends with its container.
            Target::Task => return self.readers.iter().any(|r| !r.ended),
        };
        match found {
            Ok(found) => {
                for src in found {
                    if !self.seen.contains(&src.task_id) {
                        // Started since the call: everything it wrote.
                        let q = LogQuery {
                            tail: None,
                            ..self.opts.q.clone()
                        };
                        self.add(src, q);
                    }
                }
                true
            }
            Err(e) => {
                // The service was removed, or the node left the swarm.
                tracing::debug!(error = %e, "service logs follow ended");
                false
            }
        }
    }

    /// What the readers write from now on, until the client goes or the target does.
    fn follow(&mut self) -> std::io::Result<()> {
        let mut last_look = Instant::now();
        loop {
            let mut sent = false;
            for r in self.readers.iter_mut().filter(|r| !r.ended) {
                for _ in 0..FOLLOW_BATCH {
                    match r.rx.try_recv() {
                        Ok(Msg::Record(rec)) => {
                            Self::emit(&mut self.frames, &self.opts, &r.src, rec)?;
                            sent = true;
                        }
                        Ok(Msg::CaughtUp) => {}
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            r.ended = true;
                            break;
                        }
                    }
                }
            }
            self.readers.retain(|r| !r.ended);
            if sent {
                self.frames.caught_up()?;
            }
            if self.client.is_closed() {
                return Ok(());
            }
            if last_look.elapsed() >= TASK_POLL {
                last_look = Instant::now();
                if !self.look_for_tasks() {
                    return Ok(());
                }
            }
            if !sent {
                std::thread::sleep(IDLE);
            }
        }
    }
}

/// Answers a logs request for `target` whose sources are `initial`.
fn stream(
    engine: Engine,
    target: Target,
    opts: Options,
    initial: Vec<Source>,
    tty: bool,
    version: ApiVersion,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let client = tx.clone();
    tokio::task::spawn_blocking(move || {
        let mut m = Merger {
            engine,
            target,
            frames: LogFrames::new(tx, tty, opts.timestamps),
            opts,
            client,
            stop: Arc::new(AtomicBool::new(false)),
            readers: Vec::new(),
            seen: HashSet::new(),
        };
        for src in initial {
            let q = m.opts.q.clone();
            m.add(src, q);
        }
        let mut run = || -> std::io::Result<()> {
            m.history()?;
            if m.opts.q.follow {
                m.follow()?;
            }
            Ok(())
        };
        if let Err(e) = run() {
            tracing::debug!(error = %e, "service logs ended early");
        }
    });
    let body = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok::<Bytes, std::io::Error>))
    });
    // Docker: raw with a TTY; multiplexed otherwise, labelled so from API 1.42 on.
    let content_type = if tty || version < ApiVersion::new(1, 42) {
        RAW
    } else {
        MULTIPLEXED
    };
    (
        StatusCode::OK,
        [(CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response()
}

/// `GET /services/{id}/logs?stdout=&stderr=&follow=&since=&tail=&timestamps=&details=`.
pub(crate) async fn service_logs(
    State(engine): State<Engine>,
    Extension(version): Extension<ApiVersion>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    // Docker's order: the streams, the service, then the other parameters.
    if let Err(e) = streams(&params) {
        return e.into_response();
    }
    let svc = {
        let engine = engine.clone();
        blocking(move || engine.service(&id)).await
    };
    let svc = match svc {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let opts = match options(&params) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let tty = svc.current().is_some_and(|r| spec_tty(&r.spec));
    let found = {
        let (engine, sid, follow) = (engine.clone(), svc.id.clone(), opts.q.follow);
        blocking(move || sources(&engine, &sid, follow)).await
    };
    match found {
        Ok(initial) => stream(engine, Target::Service(svc.id), opts, initial, tty, version),
        Err(e) => e.into_response(),
    }
}

/// `GET /tasks/{id}/logs?…`: as a service's, for one task (ID or unique prefix).
pub(crate) async fn task_logs(
    State(engine): State<Engine>,
    Extension(version): Extension<ApiVersion>,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    if let Err(e) = streams(&params) {
        return e.into_response();
    }
    let task = {
        let engine = engine.clone();
        blocking(move || find_task(&engine, &id)).await
    };
    let task = match task {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let opts = match options(&params) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let tty = spec_tty(&task.spec);
    let initial: Vec<Source> = Source::of(&task).into_iter().collect();
    stream(engine, Target::Task, opts, initial, tty, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::from_uri(&format!("/x?{q}").parse().expect("uri")).expect("params")
    }

    #[test]
    fn options_take_docker_s_parameters_and_words() {
        let e = options(&params("follow=1")).expect_err("no stream");
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            e.message,
            "Bad parameters: you must choose at least one stream"
        );
        let o = options(&params(
            "stdout=1&tail=3&timestamps=1&details=1&follow=1&since=1700000000.5",
        ))
        .expect("ok");
        assert!(o.q.stdout && !o.q.stderr && o.q.follow && o.timestamps && o.details);
        assert_eq!(o.q.tail, Some(3));
        assert_eq!(o.q.since, Some(1_700_000_000_500_000_000));
        assert_eq!(
            options(&params("stderr=1&tail=all")).expect("ok").q.tail,
            None
        );
        assert_eq!(
            options(&params("stderr=1&since=0")).expect("ok").q.since,
            None
        );
        let e = options(&params("stdout=1&tail=-1")).expect_err("negative");
        assert_eq!(e.message, "negative tail values not supported");
        let e = options(&params("stdout=1&tail=x")).expect_err("not a number");
        assert_eq!(
            e.message,
            "tail value must be a positive integer or \"all\""
        );
    }

    #[test]
    fn details_then_timestamps_come_before_the_line() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let mut frames = LogFrames::new(tx, false, true);
        let src = Source {
            task_id: "t1".into(),
            container_id: "c1".into(),
            details: format!("{NODE_KEY}=n1,{SERVICE_KEY}=s1,{TASK_KEY}=t1 "),
        };
        let rec = LogRecord {
            log: "hello\n".into(),
            stream: "stderr".into(),
            // Go's RFC3339Nano, trailing zeros trimmed: sent with nine digits.
            time: "2024-01-01T00:00:00.1Z".into(),
        };
        let opts = Options {
            q: LogQuery::default(),
            timestamps: true,
            details: true,
        };
        Merger::emit(&mut frames, &opts, &src, rec).expect("emit");
        frames.caught_up().expect("send");
        let chunk = rx.try_recv().expect("chunk");
        let line = "2024-01-01T00:00:00.100000000Z com.docker.swarm.node.id=n1,\
                    com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1 hello\n";
        assert_eq!(chunk[0], 2, "stderr frame");
        assert_eq!(&chunk[8..], line.as_bytes());
    }

    fn reader(task: &str, times: &[u32], then: Option<Msg>) -> Reader {
        let (tx, rx) = sync_channel(times.len() + 1);
        for t in times {
            let rec = LogRecord {
                log: format!("{task}{t}\n"),
                stream: "stdout".into(),
                time: format!("2024-01-01T00:00:{t:02}Z"),
            };
            tx.send(Msg::Record(rec)).expect("queued");
        }
        if let Some(m) = then {
            tx.send(m).expect("queued");
        }
        Reader {
            src: Source {
                task_id: task.into(),
                container_id: task.into(),
                details: String::new(),
            },
            rx,
            head: None,
            history_done: false,
            ended: false,
        }
    }

    #[test]
    fn histories_merge_by_time_and_stop_where_each_caught_up() {
        // `a` ended after its history; `b` caught up and follows (its sender lives on).
        let (keep_tx, rx) = sync_channel(8);
        let mut b = reader("b", &[], None);
        b.rx = rx;
        for t in [2u32, 3, 5] {
            let rec = LogRecord {
                log: format!("b{t}\n"),
                stream: "stdout".into(),
                time: format!("2024-01-01T00:00:{t:02}Z"),
            };
            keep_tx.send(Msg::Record(rec)).expect("queued");
        }
        keep_tx.send(Msg::CaughtUp).expect("queued");
        let mut readers = vec![reader("a", &[1, 4, 6, 7], None), b];
        let mut out = Vec::new();
        merge_history(&mut readers, |src, rec| {
            out.push(format!("{}:{}", src.task_id, rec.log.trim_end()));
            Ok(())
        })
        .expect("merged");
        assert_eq!(
            out,
            ["a:a1", "b:b2", "b:b3", "a:a4", "b:b5", "a:a6", "a:a7"]
        );
        assert!(readers[0].ended && !readers[1].ended);
        drop(keep_tx);
    }

    #[test]
    fn tty_is_read_from_the_task_template() {
        assert!(spec_tty(
            &serde_json::json!({"TaskTemplate": {"ContainerSpec": {"TTY": true}}})
        ));
        assert!(!spec_tty(&serde_json::json!({"TaskTemplate": {}})));
    }
}
