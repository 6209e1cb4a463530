//! The [`Mailer`] trait and the default [`OutboxMailer`], which writes every message to the
//! store's outbox (a relay or an operator picks them up from there).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::Utc;

use super::Outbox;
use crate::error::Result;
use crate::model::{Email, OutgoingEmail};

/// Sends messages to users.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends one message; returns it as sent (with the mailer's message id).
    async fn send(&self, email: &OutgoingEmail) -> Result<Email>;
}

/// Writes messages to an [`Outbox`].
pub struct OutboxMailer {
    outbox: Arc<dyn Outbox>,
    next: AtomicU64,
}

impl std::fmt::Debug for OutboxMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMailer").finish_non_exhaustive()
    }
}

impl OutboxMailer {
    /// A mailer writing to `outbox`.
    pub fn new(outbox: Arc<dyn Outbox>) -> Self {
        OutboxMailer { outbox, next: AtomicU64::new(0) }
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<Email> {
        let now = Utc::now();
        // Unique across processes: time, pid, and a per-process counter.
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let sent = Email {
            id: format!("msg-{}-{}-{n}", now.timestamp_micros(), std::process::id()),
            to: email.to.clone(),
            subject: email.subject.clone(),
            body: email.body.clone(),
            sent_at: now,
        };
        self.outbox.push_email(&sent).await?;
        Ok(sent)
    }
}
