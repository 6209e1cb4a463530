//! Risk tasks: `monitor_risk` computes exposure, concentration and drawdown for one user or
//! all, against their limits; `evaluate_risk_limits` (the `risk_monitoring` schedule, every
//! minute, high priority) does so for every limit, records breaches, and enqueues one
//! high-priority `send_risk_notification` per new breach.

use chrono::{DateTime, Utc};
use jobs_core::JobId;
use jobs_core::prelude::*;

use crate::error::Result as PResult;
use crate::model::{BreachKind, OutgoingEmail, RiskBreach, RiskLimit, RiskMetrics};
use crate::platform::{Platform, ago};
use crate::portfolio::{round2, value_portfolio};

/// Arguments of `monitor_risk`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MonitorRisk {
    /// One user, or (absent) every user.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// One user's figures and the limits they exceed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRisk {
    /// The figures.
    #[serde(flatten)]
    pub metrics: RiskMetrics,
    /// The limits exceeded (empty: within limits, or no limits set).
    pub breaches: Vec<BreachKind>,
    /// Whether the user has limits at all.
    pub has_limits: bool,
}

/// What `monitor_risk` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorSummary {
    /// Users checked.
    pub users: usize,
    /// Users over at least one limit.
    pub breaching: usize,
    /// Per user (for a single user, or when few enough to list: at most 50).
    pub details: Vec<UserRisk>,
}

/// Most users listed in a `monitor_risk` result.
const MAX_DETAILS: usize = 50;

/// Computes and stores the risk figures of one user (or every user) and compares them
/// with their limits. Reports only: breaches are recorded by `evaluate_risk_limits`.
#[job_handler("monitor_risk", timeout = "2m")]
pub async fn monitor_risk(args: MonitorRisk, ctx: JobContext) -> Result<MonitorSummary, JobError> {
    let platform = ctx.state::<Platform>()?;
    let store = platform.store();
    let users: Vec<String> = match args.user_id {
        Some(id) => {
            if store.user(&id).await?.is_none() {
                return Err(JobError::permanent_msg(format_args!("unknown user `{id}`")));
            }
            vec![id]
        }
        None => store.users().await?.into_iter().map(|u| u.id).collect(),
    };
    let now = Utc::now();
    let mut sum = MonitorSummary { users: users.len(), breaching: 0, details: Vec::new() };
    for user_id in users {
        let metrics = compute_metrics(platform, &user_id, now).await?;
        store.save_metrics(&metrics).await?;
        let limit = store.limit(&user_id).await?;
        let breaches: Vec<BreachKind> = limit
            .as_ref()
            .map(|l| evaluate(&metrics, l).into_iter().map(|(k, _, _)| k).collect())
            .unwrap_or_default();
        if !breaches.is_empty() {
            sum.breaching += 1;
        }
        if sum.details.len() < MAX_DETAILS {
            sum.details.push(UserRisk { metrics, breaches, has_limits: limit.is_some() });
        }
    }
    Ok(sum)
}

/// What `evaluate_risk_limits` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluationSummary {
    /// Limits evaluated.
    pub limits: usize,
    /// Breaches open after this run.
    pub open_breaches: usize,
    /// Breaches this run opened.
    pub new_breaches: usize,
    /// Breaches this run closed (figure back within the limit).
    pub resolved: usize,
    /// `send_risk_notification` jobs created.
    pub notifications_enqueued: usize,
    /// Limits of users that do not exist (skipped).
    pub skipped: usize,
}

/// Evaluates every user's limits. A limit newly exceeded opens a breach (recorded in the
/// history) and enqueues a high-priority `send_risk_notification`; a breach stays open,
/// without new notifications, until the figure is back within the limit.
///
/// Notification ids derive from the breach id, so a rerun never notifies twice.
#[job_handler("evaluate_risk_limits", priority = "high", timeout = "2m")]
#[every_minutes(1, name = "risk_monitoring", priority = "high")]
pub async fn evaluate_risk_limits(ctx: JobContext) -> Result<EvaluationSummary, JobError> {
    let platform = ctx.state::<Platform>()?;
    let store = platform.store();
    let limits = store.limits().await?;
    let now = Utc::now();
    let mut sum = EvaluationSummary {
        limits: limits.len(),
        open_breaches: 0,
        new_breaches: 0,
        resolved: 0,
        notifications_enqueued: 0,
        skipped: 0,
    };
    for limit in &limits {
        if store.user(&limit.user_id).await?.is_none() {
            sum.skipped += 1;
            continue;
        }
        let metrics = compute_metrics(platform, &limit.user_id, now).await?;
        store.save_metrics(&metrics).await?;
        let exceeded = evaluate(&metrics, limit);
        for kind in [BreachKind::Exposure, BreachKind::Concentration, BreachKind::Drawdown] {
            match exceeded.iter().find(|(k, _, _)| *k == kind) {
                Some(&(_, value, lim)) => {
                    let breach = RiskBreach {
                        id: format!(
                            "{}:{}:{}",
                            limit.user_id,
                            kind.as_str(),
                            now.timestamp_millis()
                        ),
                        user_id: limit.user_id.clone(),
                        kind,
                        value,
                        limit: lim,
                        at: now,
                    };
                    let (open, opened) = store.open_breach(&breach).await?;
                    sum.open_breaches += 1;
                    if opened {
                        sum.new_breaches += 1;
                        let created = ctx
                            .queue()
                            .enqueue_typed::<SendRiskNotificationJob>(RiskNotification {
                                breach: open.clone(),
                            })
                            .priority(JobPriority::High)
                            .user_id(open.user_id.clone())
                            .id(JobId::derived(&format!("send_risk_notification:{}", open.id)))
                            .await;
                        created?;
                        sum.notifications_enqueued += 1;
                    }
                }
                None => {
                    if store.close_breach(&limit.user_id, kind).await? {
                        sum.resolved += 1;
                    }
                }
            }
        }
    }
    if sum.new_breaches > 0 || sum.resolved > 0 {
        tracing::info!(
            new = sum.new_breaches,
            resolved = sum.resolved,
            open = sum.open_breaches,
            "risk limits evaluated"
        );
    }
    Ok(sum)
}

/// Arguments of `send_risk_notification`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RiskNotification {
    /// The breach to tell its user about.
    pub breach: RiskBreach,
}

/// What `send_risk_notification` sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationSent {
    /// Recipient.
    pub to: String,
    /// The mailer's message id.
    pub message_id: String,
}

/// Tells a user, through the mailer, that one of their risk limits is exceeded.
#[job_handler("send_risk_notification", priority = "high", max_retries = 5, timeout = "30s")]
pub async fn send_risk_notification(
    args: RiskNotification,
    ctx: JobContext,
) -> Result<NotificationSent, JobError> {
    let platform = ctx.state::<Platform>()?;
    let b = &args.breach;
    let Some(user) = platform.store().user(&b.user_id).await? else {
        return Err(JobError::permanent_msg(format_args!("unknown user `{}`", b.user_id)));
    };
    let (value, limit) = match b.kind {
        BreachKind::Exposure => (format!("{:.2}", b.value), format!("{:.2}", b.limit)),
        _ => (format!("{:.1}%", b.value * 100.0), format!("{:.1}%", b.limit * 100.0)),
    };
    let sent = platform
        .mailer()
        .send(&OutgoingEmail {
            to: user.email.clone(),
            subject: format!("Risk limit exceeded: {}", b.kind.as_str()),
            body: format!(
                "Hello {},\n\nyour portfolio's {} is {value}, above your limit of {limit} (since {}).\n",
                user.name,
                b.kind.as_str(),
                b.at.format("%Y-%m-%d %H:%M UTC")
            ),
        })
        .await?;
    Ok(NotificationSent { to: sent.to, message_id: sent.id })
}

/// A user's exposure, concentration and drawdown now. The drawdown's peak is the highest
/// value in the user's value history (kept for `snapshot_history`) and now.
pub async fn compute_metrics(
    platform: &Platform,
    user_id: &str,
    now: DateTime<Utc>,
) -> PResult<RiskMetrics> {
    let snap = value_portfolio(platform, user_id, now).await?;
    let since = ago(now, platform.settings().snapshot_history);
    let history = platform.store().value_history(user_id, since).await?;
    let exposure: f64 = snap.positions.iter().map(|p| p.value.abs()).sum();
    let top = snap.positions.iter().max_by(|a, b| a.value.abs().total_cmp(&b.value.abs()));
    let concentration = match top {
        Some(p) if exposure > 0.0 => p.value.abs() / exposure,
        _ => 0.0,
    };
    let peak = history.iter().map(|p| p.value).fold(snap.total_value, f64::max);
    let drawdown = if peak > 0.0 { ((peak - snap.total_value) / peak).max(0.0) } else { 0.0 };
    Ok(RiskMetrics {
        user_id: user_id.to_owned(),
        at: now,
        value: snap.total_value,
        exposure: round2(exposure),
        concentration: round4(concentration),
        top_symbol: top.map(|p| p.symbol.clone()),
        peak_value: round2(peak),
        drawdown: round4(drawdown),
    })
}

/// The limits `m` exceeds: `(kind, figure, limit)`. Equal to the limit is within it.
pub fn evaluate(m: &RiskMetrics, limit: &RiskLimit) -> Vec<(BreachKind, f64, f64)> {
    let mut out = Vec::new();
    if m.exposure > limit.max_exposure {
        out.push((BreachKind::Exposure, m.exposure, limit.max_exposure));
    }
    if m.concentration > limit.max_concentration {
        out.push((BreachKind::Concentration, m.concentration, limit.max_concentration));
    }
    if m.drawdown > limit.max_drawdown {
        out.push((BreachKind::Drawdown, m.drawdown, limit.max_drawdown));
    }
    out
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_exceeded_strictly() {
        let m = RiskMetrics {
            user_id: "u".into(),
            at: Utc::now(),
            value: 80.0,
            exposure: 100.0,
            concentration: 0.5,
            top_symbol: Some("A".into()),
            peak_value: 100.0,
            drawdown: 0.2,
        };
        let within = RiskLimit {
            user_id: "u".into(),
            max_exposure: 100.0,
            max_concentration: 0.5,
            max_drawdown: 0.2,
        };
        assert!(evaluate(&m, &within).is_empty());
        let tight = RiskLimit { max_exposure: 99.0, max_drawdown: 0.1, ..within };
        let kinds: Vec<BreachKind> = evaluate(&m, &tight).into_iter().map(|b| b.0).collect();
        assert_eq!(kinds, [BreachKind::Exposure, BreachKind::Drawdown]);
    }
}
