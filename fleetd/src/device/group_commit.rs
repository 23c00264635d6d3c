//! Group commit: one store transaction for every write queued while the
//! previous one was being committed.
//!
//! Under load, one transaction per device call spends more time handing
//! work to the store's thread (and, on PostgreSQL, on round trips and the
//! write lock) than writing. A [`GroupCommit`] writer takes every item
//! queued while the previous batch was being written and commits them
//! together, so the number of transactions adapts to the load: one per
//! call when the fleet is quiet, one per up to [`MAX_BATCH`] calls when it
//! is busy. Each caller still waits for its own item: an answer means its
//! write is durable (or failed, with its own error).
//!
//! Used for check-ins ([`super::checkin`]) and update results
//! ([`super::results`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// Largest batch written in one transaction.
pub const MAX_BATCH: usize = 2_000;

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// What a batch write returns: `Err` when the whole batch failed (nothing
/// written), else one outcome per item, in order.
pub type BatchResult = Result<Vec<Result<(), StoreError>>, StoreError>;

type WriteFn<T> = dyn Fn(Vec<T>) -> Pin<Box<dyn Future<Output = BatchResult> + Send>> + Send + Sync;

/// Queues items for a writer task.
pub struct GroupCommit<T> {
    tx: mpsc::Sender<(T, Reply)>,
    what: &'static str,
}

impl<T> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        GroupCommit {
            tx: self.tx.clone(),
            what: self.what,
        }
    }
}

impl<T> std::fmt::Debug for GroupCommit<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("what", &self.what)
            .finish()
    }
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Starts the writer task, which ends when the last handle is dropped.
    /// `what` names the writes in logs and errors (e.g. "check-ins").
    pub fn spawn<F, Fut>(what: &'static str, write: F) -> GroupCommit<T>
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = BatchResult> + Send + 'static,
    {
        let write: Arc<WriteFn<T>> = Arc::new(move |batch| Box::pin(write(batch)));
        let (tx, mut rx) = mpsc::channel::<(T, Reply)>(MAX_BATCH * 4);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (items, replies): (Vec<T>, Vec<Reply>) = batch.into_iter().unzip();
                let n = items.len();
                match write(items).await {
                    Ok(outcomes) if outcomes.len() == n => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(outcome);
                        }
                    }
                    Ok(outcomes) => {
                        tracing::error!(
                            expected = n,
                            got = outcomes.len(),
                            "recording {what}: the store answered for a different number of items"
                        );
                        for reply in replies {
                            let _ = reply.send(Err(failed(what)));
                        }
                    }
                    Err(e) => {
                        tracing::error!("recording {what} failed: {e:#}");
                        for reply in replies {
                            let _ = reply.send(Err(failed(what)));
                        }
                    }
                }
            }
        });
        GroupCommit { tx, what }
    }

    /// Writes one item (batched with concurrent ones) and waits until its
    /// batch is committed.
    pub async fn submit(&self, item: T) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send((item, reply))
            .await
            .map_err(|_| stopped(self.what))?;
        done.await.map_err(|_| stopped(self.what))?
    }
}

fn failed(what: &str) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("recording {what} failed"))
}

fn stopped(what: &str) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("the {what} writer stopped"))
}
