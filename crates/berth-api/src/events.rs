//! `GET /events?since=&until=&filters=`: Docker's event stream, one JSON object per line.
//!
//! Events from the engine's history newer than `since` come first, then live events as
//! they happen. With `until` in the past the stream ends after the history; with `until`
//! in the future it ends at that time; without it, when the client goes away. A
//! subscriber that falls too far behind gets an error line and the stream ends (the
//! engine never waits for a slow reader).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use berth_engine::{Engine, Event, EventType, Filters};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::error::ApiError;
use crate::params::Params;

/// Docker's event JSON (API 1.47: with the legacy `status`/`id`/`from` for containers
/// and images).
pub(crate) fn event_json(e: &Event) -> serde_json::Value {
    let mut v = json!({
        "Type": e.typ.as_str(),
        "Action": e.action,
        "Actor": { "ID": e.actor, "Attributes": e.attributes },
        "scope": "local",
        "time": e.time_nano / 1_000_000_000,
        "timeNano": e.time_nano,
    });
    if matches!(e.typ, EventType::Container | EventType::Image) {
        v["status"] = json!(e.action);
        v["id"] = json!(e.actor);
        if let Some(img) = e.attributes.get("image") {
            if e.typ == EventType::Container {
                v["from"] = json!(img);
            }
        }
    }
    v
}

/// `since`/`until`: Unix seconds with an optional fraction (`1700000000.5`), as the
/// docker CLI sends them, or RFC 3339. Returns nanoseconds.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    if let Some((secs, frac)) = s.split_once('.') {
        let secs: i64 = secs.parse().ok()?;
        let digits: String = frac.chars().take(9).collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let nanos: i64 = format!("{digits:0<9}").parse().ok()?;
        return secs.checked_mul(1_000_000_000)?.checked_add(nanos);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1_000_000_000);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

fn line(e: &Event) -> Bytes {
    let mut b = serde_json::to_vec(&event_json(e)).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

const FILTERS: &[&str] = &[
    "type",
    "event",
    "container",
    "image",
    "volume",
    "network",
    "daemon",
    "label",
    "scope",
];

/// `GET /events`.
pub(crate) async fn events(State(engine): State<Engine>, params: Params) -> Response {
    let parsed = (|| -> Result<(Option<i64>, Option<i64>, Filters), ApiError> {
        let time = |name: &str| -> Result<Option<i64>, ApiError> {
            match params.non_empty(name) {
                None => Ok(None),
                Some(v) => parse_time(v).map(Some).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid {name} value {v:?}: expected Unix seconds or RFC 3339"
                    ))
                }),
            }
        };
        let f = params.filters()?;
        f.check(FILTERS).map_err(ApiError::from)?;
        Ok((time("since")?, time("until")?, f))
    })();
    let (since, until, filters) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let sub = engine.subscribe_events();
    let now = berth_engine::events::now_nano();
    let past: Vec<Bytes> = match since {
        // Without `since`, only what happens from now on.
        None => Vec::new(),
        Some(s) => sub
            .past
            .iter()
            .filter(|e| e.time_nano >= s && until.is_none_or(|u| e.time_nano <= u))
            .filter(|e| e.matches(&filters))
            .map(line)
            .collect(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        for b in past {
            if tx.send(Ok(b)).await.is_err() {
                return;
            }
        }
        if until.is_some_and(|u| u <= now) {
            return;
        }
        let deadline = until.map(|u| {
            tokio::time::Instant::now() + Duration::from_nanos(u.saturating_sub(now).max(0) as u64)
        });
        let mut live = sub.live;
        loop {
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, live.recv()).await.ok(),
                    None => Some(live.recv().await),
                }
            };
            tokio::select! {
                r = next => match r {
                    None => return, // until reached
                    Some(Ok(e)) => {
                        if until.is_some_and(|u| e.time_nano > u) {
                            return;
                        }
                        if e.matches(&filters) && tx.send(Ok(line(&e))).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(RecvError::Lagged(n))) => {
                        let msg = json!({ "error": format!("berth: this events reader fell {n} events behind and missed them; reconnect with since= to resume") });
                        let mut b = serde_json::to_vec(&msg).unwrap_or_default();
                        b.push(b'\n');
                        let _ = tx.send(Ok(Bytes::from(b))).await;
                        return;
                    }
                    Some(Err(RecvError::Closed)) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_docker() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_time("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(
            parse_time("1700000000.000000001"),
            Some(1_700_000_000_000_000_001)
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(parse_time("soon"), None);
        assert_eq!(parse_time("1.x"), None);
    }
}
