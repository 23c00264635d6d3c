//! Group commit for check-ins.
//!
//! Every check-in writes the device's reported state. Under load, one
//! transaction per check-in spends more time handing work to the store's
//! thread than writing; this writer takes every check-in queued while the
//! previous batch was being written and commits them together, so the
//! number of transactions adapts to the load. Each caller still waits for
//! its own write: a check-in's answer means its report is stored.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::store::device_api::CheckinReport;
use crate::store::{ObjectKind, Store, StoreError};

/// Largest batch written in one transaction.
const MAX_BATCH: usize = 2_000;

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// Queues check-ins for the writer task.
#[derive(Debug, Clone)]
pub struct CheckinWriter {
    tx: mpsc::Sender<(String, CheckinReport, DateTime<Utc>, Reply)>,
}

impl CheckinWriter {
    /// Starts the writer task (it ends when the last `CheckinWriter` is
    /// dropped).
    pub fn spawn(store: Arc<dyn Store>) -> CheckinWriter {
        let (tx, mut rx) =
            mpsc::channel::<(String, CheckinReport, DateTime<Utc>, Reply)>(MAX_BATCH * 4);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (rows, replies): (Vec<_>, Vec<_>) = batch
                    .into_iter()
                    .map(|(id, report, at, reply)| ((id, report, at), reply))
                    .unzip();
                let ids: Vec<String> = rows.iter().map(|(id, _, _)| id.clone()).collect();
                match store.record_checkins(rows).await {
                    Ok(found) => {
                        for ((reply, id), found) in replies.into_iter().zip(ids).zip(found) {
                            let _ = reply.send(if found {
                                Ok(())
                            } else {
                                Err(StoreError::NotFound {
                                    kind: ObjectKind::Device,
                                    id,
                                })
                            });
                        }
                    }
                    Err(e) => {
                        tracing::error!("recording check-ins failed: {e:#}");
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::Backend(anyhow::anyhow!(
                                "recording check-ins failed"
                            ))));
                        }
                    }
                }
            }
        });
        CheckinWriter { tx }
    }

    /// Records one check-in (batched with concurrent ones).
    pub async fn record(
        &self,
        device_id: &str,
        report: CheckinReport,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send((device_id.to_owned(), report, at, reply))
            .await
            .map_err(|_| StoreError::Backend(anyhow::anyhow!("check-in writer stopped")))?;
        done.await
            .map_err(|_| StoreError::Backend(anyhow::anyhow!("check-in writer stopped")))?
    }
}
