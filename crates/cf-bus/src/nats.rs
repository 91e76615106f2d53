//! NATS JetStream bus: one file-backed stream for all platform subjects, publish with
//! de-duplication ids (`Nats-Msg-Id`), durable pull consumers per group with explicit acks.

use std::time::Duration;

use async_nats::jetstream::consumer::FromConsumer as _;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use async_trait::async_trait;
use cf_event::Event;
use cf_platform::ports::{
    Acker, BusError, Delivery, EventBus, MAX_UNACKED, Subscription, check_group, check_topic,
};
use futures::StreamExt;
use tokio::sync::mpsc;

const SUBJECT_PREFIX: &str = "cf";

/// The JetStream bus.
#[derive(Clone)]
pub struct NatsBus {
    js: jetstream::Context,
    stream: String,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("stream", &self.stream)
            .finish()
    }
}

/// The URL without credentials (`user:pass@`, `token@`).
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}[redacted]{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

fn nb(e: impl std::fmt::Display) -> BusError {
    BusError::Backend(e.to_string())
}

impl NatsBus {
    /// Connect and make sure stream `stream` (subjects `cf.>` … or `<stream>.>` for others) exists.
    pub async fn connect(url: &str, stream_name: &str) -> Result<Self, BusError> {
        if stream_name.is_empty()
            || !stream_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(BusError::InvalidTopic(
                stream_name.into(),
                "stream names hold only A-Z a-z 0-9 _ -",
            ));
        }
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| {
                BusError::Backend(format!("cannot connect to NATS at {}: {e}", redact(url)))
            })?;
        let js = jetstream::new(client);
        js.get_or_create_stream(stream::Config {
            name: stream_name.to_string(),
            subjects: vec![format!("{}.>", Self::prefix_for(stream_name))],
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(7 * 86_400),
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| {
            BusError::Backend(format!("cannot create JetStream stream {stream_name}: {e}"))
        })?;
        Ok(NatsBus {
            js,
            stream: stream_name.to_string(),
        })
    }

    fn prefix_for(stream: &str) -> String {
        if stream == "CHENGFANG" {
            SUBJECT_PREFIX.to_string()
        } else {
            format!("{SUBJECT_PREFIX}-{}", stream.to_ascii_lowercase())
        }
    }

    fn subject(&self, topic: &str) -> String {
        format!("{}.{topic}", Self::prefix_for(&self.stream))
    }

    /// Delete the stream (test clean-up).
    pub async fn delete_stream(&self) -> Result<(), BusError> {
        self.js.delete_stream(&self.stream).await.map_err(nb)?;
        Ok(())
    }
}

/// Only the reply subject of a delivery, not its payload: a group may hold up to
/// [`MAX_UNACKED`] of them.
struct NatsAcker(jetstream::message::Acker);

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.0.double_ack().await.map_err(nb)
    }
    async fn nack(&self) -> Result<(), BusError> {
        self.0.ack_with(AckKind::Nak(None)).await.map_err(nb)
    }
}

#[async_trait]
impl EventBus for NatsBus {
    fn backend(&self) -> &'static str {
        "nats"
    }

    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        check_topic(&event.topic, false)?;
        let payload = serde_json::to_vec(event).map_err(nb)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.as_str());
        self.js
            .publish_with_headers(self.subject(&event.topic), headers, payload.into())
            .await
            .map_err(nb)?
            .await
            .map_err(|e| {
                BusError::Backend(format!("JetStream did not acknowledge the publish: {e}"))
            })?;
        Ok(())
    }

    async fn publish_batch(&self, events: &[Event]) -> Result<(), BusError> {
        // Pipelined: every publish is sent before the first stream acknowledgement is awaited.
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            check_topic(&event.topic, false)?;
            let payload = serde_json::to_vec(event).map_err(nb)?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.id.as_str());
            acks.push(
                self.js
                    .publish_with_headers(self.subject(&event.topic), headers, payload.into())
                    .await
                    .map_err(nb)?,
            );
        }
        for a in acks {
            a.await.map_err(|e| {
                BusError::Backend(format!("JetStream did not acknowledge the publish: {e}"))
            })?;
        }
        Ok(())
    }

    async fn subscribe(&self, filter: &str, group: &str) -> Result<Subscription, BusError> {
        check_topic(filter, true)?;
        check_group(group)?;
        let stream = self.js.get_stream(&self.stream).await.map_err(nb)?;
        let config = pull::Config {
            durable_name: Some(group.to_string()),
            filter_subject: self.subject(filter),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            deliver_policy: jetstream::consumer::DeliverPolicy::New,
            // JetStream's default (1,000) starved the archive, which acknowledges a commit of
            // up to 50,000 at once: it waited out its linger every 1,000 events (1,400/s).
            max_ack_pending: MAX_UNACKED as i64,
            ..Default::default()
        };
        let want = config.max_ack_pending;
        let mut consumer = stream
            .get_or_create_consumer(group, config)
            .await
            .map_err(|e| BusError::Backend(format!("cannot create consumer group {group}: {e}")))?;
        if consumer.cached_info().config.max_ack_pending != want {
            // A group created by an earlier version keeps its position, its filter and whatever
            // an operator changed; only the limit is raised. If the server refuses (an account
            // limit), the group is still used as it is: slower, not stopped.
            let mut raised = consumer.cached_info().config.clone();
            raised.max_ack_pending = want;
            let raised = match pull::Config::try_from_consumer_config(raised) {
                Ok(r) => stream.create_consumer(r).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match raised {
                Ok(c) => consumer = c,
                Err(e) => tracing::warn!(error = %e, group,
                    "cannot raise the consumer group's unacknowledged limit; it stays as it was"),
            }
        }
        let mut messages = consumer.messages().await.map_err(nb)?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                // A dropped subscription stops pulling at once: left waiting, its pull requests
                // would take the group's next message to a reader that is gone, where it would
                // sit unacknowledged until the ack wait (30 s) — late for every other member.
                let m = tokio::select! {
                    // A message already pulled is handled first (returned if the reader is gone).
                    biased;
                    m = messages.next() => m,
                    () = tx.closed() => break,
                };
                let Some(m) = m else { break };
                let Ok(m) = m else { continue };
                let attempt = m.info().map(|i| i.delivered as u64).unwrap_or(1);
                match serde_json::from_slice::<Event>(&m.payload) {
                    Ok(event) => {
                        let d = Delivery {
                            event,
                            attempt,
                            acker: Box::new(NatsAcker(m.split().1)),
                        };
                        if let Err(mpsc::error::SendError(d)) = tx.send(d).await {
                            let _ = d.nack().await;
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, subject = %m.subject, "dropping a message that is not a Chengfang event");
                        let _ = m.ack_with(AckKind::Term).await;
                    }
                }
            }
        });
        Ok(Subscription { rx })
    }
}
