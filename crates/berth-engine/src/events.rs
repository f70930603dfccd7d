//! Events: what happened to containers, images, volumes and networks, in Docker's
//! vocabulary (`create`, `start`, `die`, `destroy`, `health_status: healthy`, `pull`,
//! `untag`, ...), for `docker events` and for berth's own audit of the daemon's life.
//!
//! The engine emits an [`Event`] where the change happens (never in a front end). The
//! last [`HISTORY`] events stay in memory for `since`/`until` queries, as Docker keeps
//! its last 256; live subscribers get every event through a broadcast channel. A
//! subscriber that falls more than [`CHANNEL`] events behind loses the oldest and is told
//! so (the API ends its stream) rather than slowing the engine: emitting never blocks.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::filters::Filters;

/// Events kept for `since` queries.
pub const HISTORY: usize = 1024;
/// Events a live subscriber may lag behind before it misses some.
pub const CHANNEL: usize = 4096;

/// Docker's event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Container,
    Image,
    Volume,
    Network,
    Daemon,
    Service,
    Secret,
    Config,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Container => "container",
            EventType::Image => "image",
            EventType::Volume => "volume",
            EventType::Network => "network",
            EventType::Daemon => "daemon",
            EventType::Service => "service",
            EventType::Secret => "secret",
            EventType::Config => "config",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub typ: EventType,
    /// `start`, `die`, `health_status: unhealthy`, `exec_start: sh -c ...`, ...
    pub action: String,
    /// The object: a container or image ID, a volume or network name.
    pub actor: String,
    /// Docker's actor attributes: `name`, `image`, labels, `exitCode`, ...
    pub attributes: BTreeMap<String, String>,
    /// Nanoseconds since the Unix epoch.
    pub time_nano: i64,
}

impl Event {
    /// Whether the event passes Docker's event filters: `type`, `event` (the action, or
    /// its part before `:`), `container`/`image`/`volume`/`network` (ID or name), `label`
    /// (`key` or `key=value`), `scope` (`local`), `daemon`.
    pub fn matches(&self, f: &Filters) -> bool {
        let any = |name: &str, pred: &dyn Fn(&str) -> bool| {
            let vals = f.get(name);
            vals.is_empty() || vals.iter().any(|v| pred(v))
        };
        let base_action = self.action.split(':').next().unwrap_or("").trim();
        let actor_is = |v: &str| {
            self.actor == v
                || (v.len() >= 12 && self.actor.starts_with(v))
                || self.attributes.get("name").is_some_and(|n| n == v)
        };
        let of_type = |t: EventType, name: &str| {
            if f.get(name).is_empty() {
                return true;
            }
            match (self.typ, t) {
                (a, b) if a == b => f.get(name).iter().any(|v| actor_is(v)),
                // An image filter also matches container events of that image.
                (EventType::Container, EventType::Image) => f
                    .get(name)
                    .iter()
                    .any(|v| self.attributes.get("image").is_some_and(|i| i == v)),
                _ => false,
            }
        };
        any("type", &|v| v == self.typ.as_str())
            && any("event", &|v| v == self.action || v == base_action)
            && any("scope", &|v| v == "local")
            && of_type(EventType::Container, "container")
            && of_type(EventType::Image, "image")
            && of_type(EventType::Volume, "volume")
            && of_type(EventType::Network, "network")
            && of_type(EventType::Daemon, "daemon")
            && f.labels_match("label", &self.attributes)
    }
}

/// The engine's event bus.
pub(crate) struct EventBus {
    history: Mutex<VecDeque<Event>>,
    tx: broadcast::Sender<Event>,
}

/// A live subscription: the events already in history (oldest first) and the receiver
/// of what comes after them, with nothing lost or repeated in between.
pub struct Subscription {
    pub past: Vec<Event>,
    pub live: broadcast::Receiver<Event>,
}

impl EventBus {
    pub(crate) fn new() -> EventBus {
        EventBus {
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            tx: broadcast::channel(CHANNEL).0,
        }
    }

    pub(crate) fn emit(&self, ev: Event) {
        tracing::debug!(r#type = ev.typ.as_str(), action = %ev.action, actor = %ev.actor, "event");
        let mut h = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(ev.clone());
        // Sent under the history lock, so a subscriber never sees an event twice or misses
        // one between its snapshot and its receiver. No receiver: nothing to do.
        let _ = self.tx.send(ev);
    }

    pub(crate) fn subscribe(&self) -> Subscription {
        let h = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Subscription {
            past: h.iter().cloned().collect(),
            live: self.tx.subscribe(),
        }
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_nano() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl crate::Engine {
    /// Emits an event.
    pub fn emit(
        &self,
        typ: EventType,
        action: impl Into<String>,
        actor: impl Into<String>,
        attributes: BTreeMap<String, String>,
    ) {
        self.inner.events.emit(Event {
            typ,
            action: action.into(),
            actor: actor.into(),
            attributes,
            time_nano: now_nano(),
        });
    }

    /// Emits a container event with Docker's attributes (`image`, `name`, the labels)
    /// plus `extra`.
    pub fn emit_container(
        &self,
        rec: &crate::ContainerRecord,
        action: impl Into<String>,
        extra: &[(&str, String)],
    ) {
        if rec.labels.contains_key(crate::services::LABEL_TASK_ID) {
            // A task's container changed (started, died, health): the services' loop
            // looks at once.
            self.wake_services();
        }
        let mut attrs: BTreeMap<String, String> = rec.labels.clone();
        attrs.insert("image".into(), rec.image.clone());
        attrs.insert("name".into(), rec.name.clone());
        for (k, v) in extra {
            attrs.insert((*k).to_string(), v.clone());
        }
        self.emit(EventType::Container, action, rec.id.clone(), attrs);
    }

    /// The events so far (the last [`HISTORY`]) and a receiver of the next ones.
    pub fn subscribe_events(&self) -> Subscription {
        self.inner.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(typ: EventType, action: &str, actor: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            typ,
            action: action.into(),
            actor: actor.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            time_nano: 1,
        }
    }

    fn filters(pairs: &[(&str, &str)]) -> Filters {
        let mut f = Filters::default();
        for (k, v) in pairs {
            f.insert(k, v);
        }
        f
    }

    #[test]
    fn filters_select_events() {
        let id = "a".repeat(64);
        let e = ev(
            EventType::Container,
            "health_status: healthy",
            &id,
            &[("name", "web"), ("image", "app:1"), ("tier", "front")],
        );
        assert!(e.matches(&Filters::default()));
        assert!(e.matches(&filters(&[("type", "container")])));
        assert!(!e.matches(&filters(&[("type", "image")])));
        assert!(e.matches(&filters(&[("event", "health_status")])));
        assert!(!e.matches(&filters(&[("event", "die")])));
        assert!(e.matches(&filters(&[("event", "die"), ("event", "health_status")])));
        assert!(e.matches(&filters(&[("container", "web")])));
        assert!(e.matches(&filters(&[("container", &id[..12])])));
        assert!(!e.matches(&filters(&[("container", "db")])));
        assert!(e.matches(&filters(&[("image", "app:1")])));
        assert!(e.matches(&filters(&[("label", "tier=front")])));
        assert!(!e.matches(&filters(&[("label", "tier=back")])));
        let img = ev(EventType::Image, "tag", "sha256:x", &[("name", "app:1")]);
        assert!(!img.matches(&filters(&[("container", "web")])));
        assert!(img.matches(&filters(&[("image", "app:1")])));
    }

    #[test]
    fn history_is_bounded_and_subscription_is_seamless() {
        let bus = EventBus::new();
        for i in 0..HISTORY + 5 {
            bus.emit(ev(EventType::Image, "tag", &i.to_string(), &[]));
        }
        let mut sub = bus.subscribe();
        assert_eq!(sub.past.len(), HISTORY);
        assert_eq!(sub.past[0].actor, "5");
        bus.emit(ev(EventType::Image, "untag", "x", &[]));
        let next = sub.live.try_recv().expect("live event");
        assert_eq!(next.action, "untag");
    }
}
