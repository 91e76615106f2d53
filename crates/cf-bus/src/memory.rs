//! In-process bus: one bounded queue per consumer group, shared by the group's members; a nack
//! or a member that goes away puts the event back for another member.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cf_event::Event;
use cf_platform::ports::{
    Acker, BusError, Delivery, EventBus, Subscription, check_group, check_topic, topic_matches,
};
use tokio::sync::mpsc;

const GROUP_QUEUE: usize = 65_536;

type Item = (Event, u64);

struct Group {
    filter: String,
    tx: mpsc::Sender<Item>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Item>>>,
}

/// The in-process event bus.
#[derive(Clone, Default)]
pub struct MemoryBus {
    groups: Arc<Mutex<HashMap<String, Group>>>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryBus")
    }
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }
}

struct MemAcker {
    requeue: mpsc::Sender<Item>,
    item: Mutex<Option<Item>>,
}

#[async_trait]
impl Acker for MemAcker {
    async fn ack(&self) -> Result<(), BusError> {
        Ok(())
    }
    async fn nack(&self) -> Result<(), BusError> {
        let item = self
            .item
            .lock()
            .map_err(|_| BusError::Backend("poisoned".into()))?
            .take();
        if let Some((e, n)) = item {
            self.requeue
                .send((e, n + 1))
                .await
                .map_err(|_| BusError::Backend("group closed".into()))?;
        }
        Ok(())
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        check_topic(&event.topic, false)?;
        let targets: Vec<mpsc::Sender<Item>> = {
            let g = self
                .groups
                .lock()
                .map_err(|_| BusError::Backend("poisoned".into()))?;
            g.values()
                .filter(|g| topic_matches(&g.filter, &event.topic))
                .map(|g| g.tx.clone())
                .collect()
        };
        for t in targets {
            // Backpressure rather than loss when a group falls behind.
            t.send((event.clone(), 1))
                .await
                .map_err(|_| BusError::Backend("group closed".into()))?;
        }
        Ok(())
    }

    async fn subscribe(&self, filter: &str, group: &str) -> Result<Subscription, BusError> {
        check_topic(filter, true)?;
        check_group(group)?;
        let (gtx, grx) = {
            let mut g = self
                .groups
                .lock()
                .map_err(|_| BusError::Backend("poisoned".into()))?;
            let e = g.entry(group.to_string()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(GROUP_QUEUE);
                Group {
                    filter: filter.to_string(),
                    tx,
                    rx: Arc::new(tokio::sync::Mutex::new(rx)),
                }
            });
            if e.filter != filter {
                return Err(BusError::InvalidTopic(
                    filter.into(),
                    "the group already exists with another filter",
                ));
            }
            (e.tx.clone(), e.rx.clone())
        };
        let (mtx, mrx) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let item = { grx.lock().await.recv().await };
                let Some(item) = item else { break };
                let acker = MemAcker {
                    requeue: gtx.clone(),
                    item: Mutex::new(Some(item.clone())),
                };
                let d = Delivery {
                    event: item.0.clone(),
                    attempt: item.1,
                    acker: Box::new(acker),
                };
                if let Err(mpsc::error::SendError(d)) = mtx.send(d).await {
                    // The member left: hand the event to another member.
                    let _ = d.nack().await;
                    break;
                }
            }
        });
        Ok(Subscription { rx: mrx })
    }
}
