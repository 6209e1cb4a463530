//! Price alert tasks: `check_price_alerts` marks the alerts the latest prices have crossed
//! and enqueues one `send_price_notification` per alert; `send_price_notification` tells
//! the user through the mailer.

use chrono::Utc;
use jobs_core::prelude::*;
use jobs_core::{EnqueueOutcome, JobId};

use crate::model::{AlertCondition, OutgoingEmail, PriceAlert};
use crate::platform::Platform;

/// What `check_price_alerts` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertCheckSummary {
    /// Untriggered alerts checked.
    pub checked: usize,
    /// Alerts this run marked triggered.
    pub triggered: usize,
    /// `send_price_notification` jobs created.
    pub notifications_enqueued: usize,
    /// Notifications that existed already (a concurrent or repeated check).
    pub already_enqueued: usize,
    /// Alerts on symbols without a price (not checked).
    pub without_price: usize,
}

/// The notification job of an alert: one per alert and arming, whoever enqueues it.
pub fn notification_job_id(alert: &PriceAlert) -> JobId {
    JobId::derived(&format!(
        "send_price_notification:{}:{}",
        alert.id,
        alert.created_at.timestamp_millis()
    ))
}

/// Checks every untriggered alert against its symbol's latest price. For each crossed one,
/// enqueues `send_price_notification` (high priority) under an id derived from the alert,
/// then marks the alert triggered.
///
/// Enqueueing first makes a crash between the two steps harmless: the next check enqueues
/// again under the same id, which creates nothing. Two checks racing both enqueue the same
/// id; one job exists. So each alert is notified exactly once.
#[job_handler("check_price_alerts", timeout = "2m")]
pub async fn check_price_alerts(ctx: JobContext) -> Result<AlertCheckSummary, JobError> {
    let platform = ctx.state::<Platform>()?;
    let store = platform.store();
    let prices = store.latest_quotes().await?;
    let pending: Vec<PriceAlert> =
        store.alerts().await?.into_iter().filter(|a| a.triggered_at.is_none()).collect();
    let mut sum = AlertCheckSummary {
        checked: pending.len(),
        triggered: 0,
        notifications_enqueued: 0,
        already_enqueued: 0,
        without_price: 0,
    };
    let mut crossed = Vec::new();
    for a in pending {
        match prices.get(&a.symbol) {
            None => sum.without_price += 1,
            Some(q) if a.is_crossed_by(q.price) => crossed.push((a, q.price)),
            Some(_) => {}
        }
    }
    if crossed.is_empty() {
        return Ok(sum);
    }
    let mut jobs = Vec::with_capacity(crossed.len());
    for (a, price) in &crossed {
        let mut job = ctx.queue().new_typed_job::<SendPriceNotificationJob>(PriceNotification {
            alert_id: a.id.clone(),
            price: Some(*price),
        })?;
        job.id = notification_job_id(a);
        job.priority = JobPriority::High;
        job.user_id = Some(a.user_id.clone());
        jobs.push(job);
    }
    for o in ctx.queue().enqueue_many(&jobs).await? {
        match o {
            EnqueueOutcome::Created => sum.notifications_enqueued += 1,
            EnqueueOutcome::Duplicate | EnqueueOutcome::Unique { .. } => sum.already_enqueued += 1,
        }
    }
    let now = Utc::now();
    for (a, price) in &crossed {
        if store.mark_triggered(&a.id, *price, now).await? {
            sum.triggered += 1;
        }
    }
    tracing::info!(
        triggered = sum.triggered,
        enqueued = sum.notifications_enqueued,
        "price alerts"
    );
    Ok(sum)
}

/// Arguments of `send_price_notification`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PriceNotification {
    /// The triggered alert.
    pub alert_id: String,
    /// The price that crossed its threshold (the job may run before the alert's trigger
    /// is recorded, so the price travels with it).
    #[serde(default)]
    pub price: Option<f64>,
}

/// What `send_price_notification` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceNotificationSummary {
    /// The alert.
    pub alert_id: String,
    /// `sent`, or `already_sent` for a repeated delivery.
    pub status: String,
    /// Recipient.
    pub to: Option<String>,
    /// The mailer's message id.
    pub message_id: Option<String>,
}

/// Mails the alert's user that it triggered, and marks the alert notified. A delivery for
/// an alert already notified sends nothing; an unknown alert or user fails permanently.
///
/// At most 20 a second across every process: the mailer's sending rate.
#[job_handler(
    "send_price_notification",
    priority = "high",
    max_retries = 5,
    timeout = "30s",
    rate_limit(max = 20, per = "1s")
)]
pub async fn send_price_notification(
    args: PriceNotification,
    ctx: JobContext,
) -> Result<PriceNotificationSummary, JobError> {
    let platform = ctx.state::<Platform>()?;
    let store = platform.store();
    let Some(alert) = store.alert(&args.alert_id).await? else {
        return Err(JobError::permanent_msg(format_args!("unknown alert `{}`", args.alert_id)));
    };
    if alert.notified_at.is_some() {
        return Ok(PriceNotificationSummary {
            alert_id: alert.id,
            status: "already_sent".into(),
            to: None,
            message_id: None,
        });
    }
    let Some(user) = store.user(&alert.user_id).await? else {
        return Err(JobError::permanent_msg(format_args!("unknown user `{}`", alert.user_id)));
    };
    let side = match alert.condition {
        AlertCondition::Above => "rose to",
        AlertCondition::Below => "fell to",
    };
    let price =
        args.price.or(alert.triggered_price).map_or_else(|| "?".to_owned(), |p| format!("{p:.2}"));
    let sent = platform
        .mailer()
        .send(&OutgoingEmail {
            to: user.email.clone(),
            subject: format!("Price alert: {} {side} {price}", alert.symbol),
            body: format!(
                "Hello {},\n\n{} {side} {price}, crossing your alert threshold of {:.2}.\n",
                user.name, alert.symbol, alert.threshold
            ),
        })
        .await?;
    store.mark_notified(&alert.id, Utc::now()).await?;
    Ok(PriceNotificationSummary {
        alert_id: alert.id,
        status: "sent".into(),
        to: Some(sent.to),
        message_id: Some(sent.id),
    })
}
