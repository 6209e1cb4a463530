//! Each task against seeded data on a real, private Redis (one server per test binary,
//! one namespace per test), with follow-up jobs going to an in-memory queue. The
//! exactly-once properties run against the in-memory store too.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs_core::redis::RedisConfig;
use jobs_core::testing::{RunOutcome, TestQueue};
use jobs_core::{Job, JobContext, JobId, JobPriority, JobQueue, State};
use jobs_tasks::alerts::{
    CheckPriceAlertsJob, PriceNotification, SendPriceNotificationJob, check_price_alerts,
    send_price_notification,
};
use jobs_tasks::bots::{RestartBots, bot_health_check, restart_unhealthy_bots};
use jobs_tasks::cleanup::{CleanupData, cleanup_data, vacuum_database};
use jobs_tasks::market::{FetchMarketData, fetch_market_data, update_24h_stats};
use jobs_tasks::model::{
    AlertCondition, Bot, BotStatus, BreachKind, LogEntry, Position, PriceAlert, Quote, RiskLimit,
    Trade, User,
};
use jobs_tasks::platform::{MarketSource, Platform, RedisStore, Settings};
use jobs_tasks::portfolio::{
    SyncAllPortfoliosJob, SyncPortfolio, SyncPortfolioJob, sync_all_portfolios, sync_portfolio,
};
use jobs_tasks::reports::{GenerateDailyReport, generate_daily_report, send_daily_summary_emails};
use jobs_tasks::risk::{
    MonitorRisk, RiskNotification, evaluate_risk_limits, monitor_risk, send_risk_notification,
};
use jobs_tasks::seed::{DemoConfig, seed_demo, seed_demo_at};
use jobs_test_support::{shared, shared_cluster, unique_namespace};
use serde_json::json;

async fn redis_platform(prefix: &str) -> Platform {
    let ns = unique_namespace(prefix);
    Platform::redis(&shared().url(), &ns)
        .await
        .expect("connect the trading store to the test redis")
}

/// The store on the shared three-master Redis Cluster, found from one node's URL.
async fn cluster_platform(prefix: &str) -> Platform {
    let cfg = RedisConfig::new(&shared_cluster().url()).namespace(unique_namespace(prefix));
    Platform::redis_with(&cfg).await.expect("connect the trading store to the test cluster")
}

/// Both stores (Redis also as a cluster), to run the same assertions on each.
async fn both(prefix: &str) -> [(&'static str, Platform); 3] {
    [
        ("memory", Platform::memory()),
        ("redis", redis_platform(prefix).await),
        ("cluster", cluster_platform(prefix).await),
    ]
}

fn ctx(platform: &Platform, queue: &JobQueue, name: &str) -> JobContext {
    JobContext::new(JobId::new(), name, 1, queue.clone())
        .with_state(Arc::new(State::new().with(platform.clone())))
}

async fn pending(queue: &JobQueue) -> Vec<Job> {
    queue.pending_jobs(None, 1000).await.expect("list pending jobs")
}

fn user(id: &str) -> User {
    User { id: id.into(), email: format!("{id}@example.com"), name: id.to_uppercase() }
}

fn quote(symbol: &str, price: f64, at: DateTime<Utc>) -> Quote {
    Quote { symbol: symbol.into(), price, volume: 10.0, at }
}

fn pos(symbol: &str, quantity: f64, avg_cost: f64) -> Position {
    Position { symbol: symbol.into(), quantity, avg_cost }
}

fn ago(minutes: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::minutes(minutes)
}

#[tokio::test]
async fn sync_portfolio_values_positions_at_latest_prices() {
    let p = redis_platform("sync").await;
    let s = p.store();
    s.put_user(&user("alice")).await.expect("user");
    s.add_symbols(&["AAA".into(), "BBB".into()]).await.expect("symbols");
    // An older quote recorded after the newer one must not become the latest price.
    s.record_quotes(&[quote("AAA", 12.5, ago(1)), quote("BBB", 4.0, ago(1))]).await.expect("q");
    s.record_quotes(&[quote("AAA", 99.0, ago(30))]).await.expect("late quote");
    s.set_positions("alice", &[pos("AAA", 10.0, 10.0), pos("BBB", 5.0, 5.0), pos("ZZZ", 1.0, 1.0)])
        .await
        .expect("positions");
    let queue = JobQueue::memory();

    let out = sync_portfolio(
        SyncPortfolio { user_id: "alice".into() },
        ctx(&p, &queue, "sync_portfolio"),
    )
    .await
    .expect("sync");
    assert_eq!(out.total_value, 125.0 + 20.0);
    assert_eq!(out.pnl, (125.0 - 100.0) + (20.0 - 25.0));
    assert_eq!(out.positions, 2);
    assert_eq!(out.missing_prices, ["ZZZ"]);

    let snap = s.latest_snapshot("alice").await.expect("read").expect("snapshot stored");
    assert_eq!(snap.total_value, 145.0);
    assert_eq!(snap.positions.iter().map(|p| p.price).collect::<Vec<_>>(), [12.5, 4.0]);
    let history = s.value_history("alice", ago(5)).await.expect("history");
    assert_eq!(history.iter().map(|v| v.value).collect::<Vec<_>>(), [145.0]);

    let err = sync_portfolio(
        SyncPortfolio { user_id: "nobody".into() },
        ctx(&p, &queue, "sync_portfolio"),
    )
    .await
    .expect_err("unknown user");
    assert!(!err.is_retryable(), "an unknown user is permanent: {err}");
}

#[tokio::test]
async fn sync_all_portfolios_fans_out_one_job_per_user_in_batches() {
    let p = redis_platform("fanout")
        .await
        .with_settings(Settings { sync_batch_size: 3, ..Settings::default() });
    seed_demo(&p, &DemoConfig { users: 7, ..DemoConfig::default() }).await.expect("seed");
    // The testing queue runs the fan-out and then every job it enqueued, as a worker would.
    let test = TestQueue::new().with_state(State::new().with(p.clone()));
    let fanout = test.queue().enqueue_typed::<SyncAllPortfoliosJob>(()).await.expect("enqueue");

    let drained = test.drain().await.expect("drain");
    let Some(RunOutcome::Completed(out)) = drained.outcome(fanout) else {
        panic!("fan-out did not complete: {drained:?}");
    };
    assert_eq!(
        (&out["users"], &out["batches"], &out["enqueued"], &out["duplicates"]),
        (&json!(7), &json!(3), &json!(7), &json!(0))
    );
    let mut users: Vec<String> =
        test.enqueued::<SyncPortfolioJob>().into_iter().map(|a| a.user_id).collect();
    users.sort();
    assert_eq!(users, (1..=7).map(|i| format!("user-{i:03}")).collect::<Vec<_>>());
    test.assert_enqueued::<SyncPortfolioJob>(|a| a.user_id == "user-004");
    // Each fanned-out job ran and did its work.
    let synced: Vec<_> = drained.of::<SyncPortfolioJob>().collect();
    assert_eq!(synced.len(), 7);
    assert!(synced.iter().all(|r| matches!(r.outcome, RunOutcome::Completed(_))), "{synced:?}");
    for i in 1..=7 {
        let id = format!("user-{i:03}");
        let snap = p.store().latest_snapshot(&id).await.expect("read").expect("synced");
        assert!(snap.total_value > 0.0, "{id}: {snap:?}");
    }

    // A redelivery of the same fan-out job (same id, a later attempt) creates nothing new.
    let redelivered = JobContext::new(fanout, "sync_all_portfolios", 2, test.queue().clone())
        .with_state(Arc::new(State::new().with(p.clone())));
    let again = sync_all_portfolios(redelivered).await.expect("redelivered fan out");
    assert_eq!((again.enqueued, again.duplicates), (0, 7));
    assert_eq!(test.enqueued::<SyncPortfolioJob>().len(), 7);
    assert!(test.drain().await.expect("drain again").runs.is_empty());
}

#[tokio::test]
async fn a_triggered_alert_notifies_through_the_testing_queue() {
    let p = Platform::memory();
    let s = p.store();
    s.put_user(&user("erin")).await.expect("user");
    s.add_symbols(&["AAA".into()]).await.expect("symbols");
    s.put_alert(&PriceAlert {
        user_id: "erin".into(),
        ..alert("up", "AAA", AlertCondition::Above, 100.0)
    })
    .await
    .expect("alert");
    s.record_quotes(&[quote("AAA", 101.0, ago(1))]).await.expect("q");
    let test = TestQueue::new().with_state(State::new().with(p.clone()));

    let check = test.queue().enqueue_typed::<CheckPriceAlertsJob>(()).await.expect("enqueue");
    let drained = test.drain().await.expect("drain");
    assert!(matches!(drained.outcome(check), Some(RunOutcome::Completed(_))), "{drained:?}");
    test.assert_enqueued::<SendPriceNotificationJob>(|n| {
        n.alert_id == "up" && n.price == Some(101.0)
    });
    let sent: Vec<_> = drained.of::<SendPriceNotificationJob>().collect();
    assert_eq!(sent.len(), 1, "{drained:?}");
    assert!(matches!(&sent[0].outcome, RunOutcome::Completed(v) if v["status"] == "sent"));
    let outbox = s.outbox(10).await.expect("outbox");
    assert_eq!(outbox.len(), 1);
    assert!(outbox[0].subject.contains("AAA rose to 101.00"), "{:?}", outbox[0]);

    // Checked again: nothing new to notify.
    test.queue().enqueue_typed::<CheckPriceAlertsJob>(()).await.expect("enqueue");
    let drained = test.drain().await.expect("drain");
    assert_eq!(drained.runs.len(), 1);
    assert_eq!(test.enqueued::<SendPriceNotificationJob>().len(), 1);
}

/// One user, two symbols: 750 of AAA and 250 of BBB now, after a peak of 1250.
async fn risky_user(p: &Platform) {
    let s = p.store();
    s.put_user(&user("bob")).await.expect("user");
    s.add_symbols(&["AAA".into(), "BBB".into()]).await.expect("symbols");
    s.record_quotes(&[quote("AAA", 75.0, ago(1)), quote("BBB", 25.0, ago(1))]).await.expect("q");
    s.set_positions("bob", &[pos("AAA", 10.0, 50.0), pos("BBB", 10.0, 20.0)]).await.expect("pos");
    let mut peak = jobs_tasks::portfolio::value_positions(
        "bob",
        &[pos("AAA", 10.0, 50.0), pos("BBB", 10.0, 20.0)],
        &HashMap::new(),
        ago(60),
    );
    peak.total_value = 1250.0;
    s.save_snapshot(&peak).await.expect("peak snapshot");
}

#[tokio::test]
async fn monitor_risk_measures_exposure_concentration_and_drawdown() {
    let p = redis_platform("monitor").await;
    risky_user(&p).await;
    p.store().put_user(&user("carol")).await.expect("user");
    p.store()
        .set_limit(&RiskLimit {
            user_id: "bob".into(),
            max_exposure: 2000.0,
            max_concentration: 0.7,
            max_drawdown: 0.1,
        })
        .await
        .expect("limit");
    let queue = JobQueue::memory();

    let one =
        monitor_risk(MonitorRisk { user_id: Some("bob".into()) }, ctx(&p, &queue, "monitor_risk"))
            .await
            .expect("monitor bob");
    assert_eq!((one.users, one.breaching), (1, 1));
    let m = &one.details[0].metrics;
    assert_eq!((m.value, m.exposure, m.peak_value), (1000.0, 1000.0, 1250.0));
    assert_eq!(m.concentration, 0.75);
    assert_eq!(m.top_symbol.as_deref(), Some("AAA"));
    assert_eq!(m.drawdown, 0.2);
    assert_eq!(one.details[0].breaches, [BreachKind::Concentration, BreachKind::Drawdown]);

    let all =
        monitor_risk(MonitorRisk::default(), ctx(&p, &queue, "monitor_risk")).await.expect("all");
    assert_eq!((all.users, all.breaching), (2, 1));
    assert!(!all.details.iter().any(|d| d.metrics.user_id == "carol" && d.has_limits));
    assert!(pending(&queue).await.is_empty(), "monitoring alone notifies nobody");
}

#[tokio::test]
async fn evaluate_risk_limits_records_breaches_and_notifies_once_per_breach() {
    let p = redis_platform("limits").await;
    risky_user(&p).await;
    let limit = RiskLimit {
        user_id: "bob".into(),
        max_exposure: 900.0,
        max_concentration: 1.0,
        max_drawdown: 0.5,
    };
    p.store().set_limit(&limit).await.expect("limit");
    p.store()
        .set_limit(&RiskLimit { user_id: "ghost".into(), ..limit.clone() })
        .await
        .expect("limit of a user who does not exist");
    let queue = JobQueue::memory();

    let first = evaluate_risk_limits(ctx(&p, &queue, "evaluate_risk_limits")).await.expect("eval");
    assert_eq!((first.limits, first.skipped), (2, 1));
    assert_eq!((first.new_breaches, first.open_breaches, first.notifications_enqueued), (1, 1, 1));
    let jobs = pending(&queue).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].name, "send_risk_notification");
    assert_eq!(jobs[0].priority, JobPriority::High);
    assert_eq!(jobs[0].args["breach"]["kind"], "exposure");

    // Still breached a minute later: the breach stays open, nobody is told twice.
    let second = evaluate_risk_limits(ctx(&p, &queue, "evaluate_risk_limits")).await.expect("eval");
    assert_eq!(
        (second.new_breaches, second.open_breaches, second.notifications_enqueued),
        (0, 1, 0)
    );
    assert_eq!(pending(&queue).await.len(), 1);
    assert_eq!(p.store().breach_history(ago(5)).await.expect("history").len(), 1);

    // The notification goes out through the mailer.
    let args: RiskNotification = serde_json::from_value(jobs[0].args.clone()).expect("args");
    let sent = send_risk_notification(args, ctx(&p, &queue, "send_risk_notification"))
        .await
        .expect("send");
    assert_eq!(sent.to, "bob@example.com");
    let outbox = p.store().outbox(10).await.expect("outbox");
    assert_eq!(outbox.len(), 1);
    assert!(outbox[0].subject.contains("exposure"), "{:?}", outbox[0]);

    // Back within limits: the breach closes.
    p.store().set_positions("bob", &[pos("AAA", 10.0, 50.0)]).await.expect("sold BBB");
    let third = evaluate_risk_limits(ctx(&p, &queue, "evaluate_risk_limits")).await.expect("eval");
    assert_eq!((third.resolved, third.open_breaches), (1, 0));
    assert!(p.store().open_breaches().await.expect("open").is_empty());
}

fn alert(id: &str, symbol: &str, condition: AlertCondition, threshold: f64) -> PriceAlert {
    PriceAlert {
        id: id.into(),
        user_id: "dave".into(),
        symbol: symbol.into(),
        condition,
        threshold,
        created_at: ago(60),
        triggered_at: None,
        triggered_price: None,
        notified_at: None,
    }
}

#[tokio::test]
async fn a_price_crossing_an_alert_threshold_triggers_exactly_one_notification() {
    for (kind, p) in both("alerts").await {
        let s = p.store();
        s.put_user(&user("dave")).await.expect("user");
        s.add_symbols(&["AAA".into(), "BBB".into()]).await.expect("symbols");
        s.record_quotes(&[quote("AAA", 99.0, ago(3)), quote("BBB", 50.0, ago(3))])
            .await
            .expect("q");
        s.put_alert(&alert("up", "AAA", AlertCondition::Above, 100.0)).await.expect("alert");
        s.put_alert(&alert("down", "BBB", AlertCondition::Below, 40.0)).await.expect("alert");
        s.put_alert(&alert("nope", "ZZZ", AlertCondition::Below, 1.0)).await.expect("alert");
        let queue = JobQueue::memory();

        let before =
            check_price_alerts(ctx(&p, &queue, "check_price_alerts")).await.expect("check");
        assert_eq!((before.checked, before.triggered, before.without_price), (3, 0, 1), "{kind}");
        assert!(pending(&queue).await.is_empty(), "{kind}");

        // AAA crosses 100. Two checks racing, then a third one later.
        s.record_quotes(&[quote("AAA", 101.0, ago(1))]).await.expect("q");
        let (a, b) = tokio::join!(
            check_price_alerts(ctx(&p, &queue, "check_price_alerts")),
            check_price_alerts(ctx(&p, &queue, "check_price_alerts")),
        );
        let (a, b) = (a.expect("check a"), b.expect("check b"));
        assert_eq!(a.triggered + b.triggered, 1, "{kind}: {a:?} {b:?}");
        assert_eq!(a.notifications_enqueued + b.notifications_enqueued, 1, "{kind}");
        let later = check_price_alerts(ctx(&p, &queue, "check_price_alerts")).await.expect("check");
        assert_eq!(
            (later.checked, later.triggered, later.notifications_enqueued),
            (2, 0, 0),
            "{kind}"
        );

        let jobs = pending(&queue).await;
        assert_eq!(jobs.len(), 1, "{kind}: exactly one notification job");
        assert_eq!(jobs[0].name, "send_price_notification");
        assert_eq!(jobs[0].priority, JobPriority::High);
        assert_eq!(jobs[0].user_id.as_deref(), Some("dave"));
        let up = s.alert("up").await.expect("read").expect("alert");
        assert_eq!(up.triggered_price, Some(101.0), "{kind}");
        assert!(s.alert("down").await.expect("read").expect("alert").triggered_at.is_none());

        // Delivered twice (at least once): one message.
        let args: PriceNotification = serde_json::from_value(jobs[0].args.clone()).expect("args");
        let first =
            send_price_notification(args.clone(), ctx(&p, &queue, "send_price_notification"))
                .await
                .expect("send");
        assert_eq!(
            (first.status.as_str(), first.to.as_deref()),
            ("sent", Some("dave@example.com"))
        );
        let again = send_price_notification(args, ctx(&p, &queue, "send_price_notification"))
            .await
            .expect("send again");
        assert_eq!(again.status, "already_sent", "{kind}");
        let outbox = s.outbox(10).await.expect("outbox");
        assert_eq!(outbox.len(), 1, "{kind}");
        assert!(outbox[0].subject.contains("AAA rose to 101.00"), "{kind}: {:?}", outbox[0]);

        let unknown = PriceNotification { alert_id: "missing".into(), price: None };
        let err = send_price_notification(unknown, ctx(&p, &queue, "send_price_notification"))
            .await
            .expect_err("unknown alert");
        assert!(!err.is_retryable(), "{kind}");
    }
}

fn bot(id: &str, status: BotStatus, heartbeat_minutes_ago: i64, restarts: u32) -> Bot {
    Bot {
        id: id.into(),
        user_id: "erin".into(),
        name: format!("{id} grid"),
        symbol: "AAA".into(),
        status,
        last_heartbeat: Some(ago(heartbeat_minutes_ago)),
        restarts,
        last_restart: None,
    }
}

#[tokio::test]
async fn a_bot_with_a_stale_heartbeat_is_restarted() {
    for (kind, p) in both("bots").await {
        let s = p.store();
        s.put_user(&user("erin")).await.expect("user");
        s.put_bot(&bot("fresh", BotStatus::Running, 1, 0)).await.expect("bot");
        s.put_bot(&bot("stale", BotStatus::Running, 20, 0)).await.expect("bot");
        s.put_bot(&bot("tired", BotStatus::Running, 20, 5)).await.expect("bot");
        s.put_bot(&bot("off", BotStatus::Stopped, 600, 0)).await.expect("bot");
        let queue = JobQueue::memory();

        let health = bot_health_check(ctx(&p, &queue, "bot_health_check")).await.expect("check");
        assert_eq!((health.checked, health.healthy, health.newly_unhealthy), (3, 1, 2), "{kind}");
        assert_eq!(health.unhealthy, ["stale", "tired"], "{kind}");
        let jobs = pending(&queue).await;
        assert_eq!(jobs.len(), 1, "{kind}");
        assert_eq!(jobs[0].name, "restart_unhealthy_bots");
        assert_eq!(jobs[0].priority, JobPriority::High);
        assert_eq!(Some(jobs[0].id), health.restart_job);

        let r = restart_unhealthy_bots(
            RestartBots::default(),
            ctx(&p, &queue, "restart_unhealthy_bots"),
        )
        .await
        .expect("restart");
        assert_eq!(r.restarted.len(), 1, "{kind}: {r:?}");
        assert_eq!((r.restarted[0].bot_id.as_str(), r.restarted[0].restarts), ("stale", 1));
        assert_eq!(r.gave_up, ["tired"], "{kind}: restarted 5 times already");

        let stale = s.bot("stale").await.expect("read").expect("bot");
        assert_eq!((stale.status, stale.restarts), (BotStatus::Running, 1), "{kind}");
        assert!(stale.last_heartbeat.is_some_and(|t| t > ago(1)), "{kind}: fresh heartbeat");
        assert_eq!(s.bot("tired").await.expect("read").expect("bot").status, BotStatus::Failed);
        assert_eq!(s.bot("off").await.expect("read").expect("bot").status, BotStatus::Stopped);
        let logs = s.logs(ago(5)).await.expect("logs");
        assert!(logs.iter().any(|l| l.message.contains("bot stale restarted")), "{kind}: {logs:?}");

        // A second restart run finds nothing to do; the next check finds everyone healthy.
        let r2 = restart_unhealthy_bots(
            RestartBots::default(),
            ctx(&p, &queue, "restart_unhealthy_bots"),
        )
        .await
        .expect("restart again");
        assert!(r2.restarted.is_empty() && r2.gave_up.is_empty(), "{kind}");
        let queue2 = JobQueue::memory();
        let health2 = bot_health_check(ctx(&p, &queue2, "bot_health_check")).await.expect("check");
        assert_eq!((health2.checked, health2.healthy, health2.failed), (2, 2, 1), "{kind}");
        assert!(health2.restart_job.is_none() && pending(&queue2).await.is_empty(), "{kind}");
    }
}

#[tokio::test]
async fn cleanup_deletes_only_what_is_past_retention() {
    let p = redis_platform("cleanup").await;
    let s = p.store();
    let day = 24 * 60;
    for (id, minutes) in [("t-old", 91 * day), ("t-kept", 89 * day), ("t-new", 5)] {
        s.record_trade(&Trade {
            id: id.into(),
            user_id: "u".into(),
            symbol: "AAA".into(),
            quantity: 1.0,
            price: 1.0,
            at: ago(minutes),
        })
        .await
        .expect("trade");
    }
    for (msg, minutes) in [("old", 31 * day), ("kept", 29 * day)] {
        s.log(&LogEntry { at: ago(minutes), level: "info".into(), message: msg.into() })
            .await
            .expect("log");
    }
    let v = serde_json::json!({"x": 1});
    s.cache_put("stale", &v, ago(61)).await.expect("cache");
    s.cache_put("fresh", &v, ago(59)).await.expect("cache");
    let queue = JobQueue::memory();

    let out =
        cleanup_data(CleanupData::default(), ctx(&p, &queue, "cleanup_data")).await.expect("clean");
    assert_eq!((out.trades, out.logs, out.cache), (1, 1, 1));
    let trades: Vec<String> =
        s.trades(ago(1000 * day)).await.expect("trades").into_iter().map(|t| t.id).collect();
    assert_eq!(trades, ["t-kept", "t-new"]);
    let logs: Vec<String> =
        s.logs(ago(1000 * day)).await.expect("logs").into_iter().map(|l| l.message).collect();
    assert_eq!(logs, ["kept"]);
    assert!(s.cache_get("stale").await.expect("read").is_none());
    assert_eq!(s.cache_get("fresh").await.expect("read"), Some(v));

    // Arguments override the settings; a second run finds nothing more at the defaults.
    let again =
        cleanup_data(CleanupData::default(), ctx(&p, &queue, "cleanup_data")).await.expect("clean");
    assert_eq!((again.trades, again.logs, again.cache), (0, 0, 0));
    let short = CleanupData { trade_retention_days: Some(1), ..CleanupData::default() };
    let out = cleanup_data(short, ctx(&p, &queue, "cleanup_data")).await.expect("clean");
    assert_eq!(out.trades, 1, "only t-new is younger than a day");
}

#[tokio::test]
async fn vacuum_trims_histories_and_drops_orphans() {
    let ns = unique_namespace("vacuum");
    let store = Arc::new(RedisStore::connect(&shared().url(), &ns).await.expect("connect"));
    let p = Platform::new(store.clone());
    let s = p.store();
    let day = 24 * 60;
    s.put_user(&user("frank")).await.expect("user");
    s.add_symbols(&["AAA".into()]).await.expect("symbols");
    s.record_quotes(&[
        quote("AAA", 1.0, ago(8 * day)),
        quote("AAA", 2.0, ago(day)),
        quote("AAA", 3.0, ago(1)),
    ])
    .await
    .expect("quotes");
    // Records of a symbol and a user that no longer exist.
    s.record_quotes(&[quote("GONE", 1.0, ago(1))]).await.expect("quote of an untracked symbol");
    s.set_positions("ghost", &[pos("AAA", 1.0, 1.0)]).await.expect("orphan positions");
    let mut snap = jobs_tasks::portfolio::value_positions("ghost", &[], &HashMap::new(), ago(1));
    snap.total_value = 1.0;
    s.save_snapshot(&snap).await.expect("orphan snapshot");
    let mut old = alert("old", "AAA", AlertCondition::Above, 1.0);
    old.user_id = "frank".into();
    s.put_alert(&old).await.expect("alert");
    s.mark_triggered("old", 2.0, ago(40 * day)).await.expect("mark");
    s.mark_notified("old", ago(40 * day)).await.expect("mark");
    let mut live = alert("live", "AAA", AlertCondition::Above, 10.0);
    live.user_id = "frank".into();
    s.put_alert(&live).await.expect("alert");
    let queue = JobQueue::memory();

    let out = vacuum_database(ctx(&p, &queue, "vacuum_database")).await.expect("vacuum");
    assert_eq!(out.report.price_points, 1, "{out:?}");
    assert_eq!(out.report.alerts, 1, "{out:?}");
    // history:GONE, the GONE quote, ghost's positions, snapshot and value history.
    assert_eq!(out.report.orphans, 5, "{out:?}");
    assert!(out.report.memory_before.is_some() && out.report.memory_after.is_some());
    assert_eq!(out.removed, 7);

    let prices: Vec<f64> =
        s.history("AAA", ago(100 * day)).await.expect("h").iter().map(|q| q.price).collect();
    assert_eq!(prices, [2.0, 3.0]);
    assert!(s.latest_quotes().await.expect("quotes").keys().eq(["AAA"].iter()));
    let mut conn = shared().connection().expect("connect");
    let exists: u32 = redis::cmd("EXISTS")
        .arg(store.keys().values("ghost"))
        .arg(store.keys().history("GONE"))
        .query(&mut conn)
        .expect("exists");
    assert_eq!(exists, 0, "orphan keys dropped");
    let alerts: Vec<String> = s.alerts().await.expect("alerts").into_iter().map(|a| a.id).collect();
    assert_eq!(alerts, ["live"]);

    let again = vacuum_database(ctx(&p, &queue, "vacuum_database")).await.expect("vacuum");
    assert_eq!(again.removed, 0, "{again:?}");
}

/// A market source with fixed prices.
struct FixedFeed(HashMap<String, f64>);

#[async_trait]
impl MarketSource for FixedFeed {
    fn name(&self) -> &str {
        "fixed"
    }
    async fn quotes(
        &self,
        symbols: &[String],
        at: DateTime<Utc>,
    ) -> jobs_tasks::Result<Vec<Quote>> {
        Ok(symbols.iter().filter_map(|s| Some(quote(s, *self.0.get(s)?, at))).collect())
    }
}

#[tokio::test]
async fn market_data_is_fetched_into_the_store_and_summarised_over_24h() {
    let feed =
        FixedFeed([("AAA".to_owned(), 105.0), ("BBB".to_owned(), 7.0)].into_iter().collect());
    let p = redis_platform("market").await.with_market_source(Arc::new(feed));
    let s = p.store();
    s.add_symbols(&["AAA".into()]).await.expect("symbols");
    s.record_quotes(&[
        quote("AAA", 500.0, ago(25 * 60)), // outside the 24 h window
        quote("AAA", 100.0, ago(23 * 60)),
        quote("AAA", 120.0, ago(12 * 60)),
        quote("AAA", 90.0, ago(60)),
    ])
    .await
    .expect("history");
    let queue = JobQueue::memory();

    let out = fetch_market_data(FetchMarketData::default(), ctx(&p, &queue, "fetch_market_data"))
        .await
        .expect("fetch");
    assert_eq!((out.source.as_str(), out.symbols, out.quotes), ("fixed", 1, 1));
    assert_eq!(s.latest_quotes().await.expect("q")["AAA"].price, 105.0);
    assert_eq!(s.cache_get("quote:AAA").await.expect("cache").expect("cached")["price"], 105.0);

    let more = FetchMarketData { symbols: Some(vec!["BBB".into(), "CCC".into()]) };
    let out = fetch_market_data(more, ctx(&p, &queue, "fetch_market_data")).await.expect("fetch");
    assert_eq!((out.symbols, out.quotes), (2, 1), "the source knows no CCC");
    assert_eq!(s.symbols().await.expect("symbols"), ["AAA", "BBB", "CCC"]);

    let stats = update_24h_stats(ctx(&p, &queue, "update_24h_stats")).await.expect("stats");
    assert_eq!((stats.symbols, stats.updated), (3, 2));
    assert_eq!(stats.without_data, ["CCC"]);
    let st = &s.stats().await.expect("stats")["AAA"];
    assert_eq!((st.open, st.high, st.low, st.last, st.samples), (100.0, 120.0, 90.0, 105.0, 4));
    assert_eq!((st.change, st.change_pct, st.volume), (5.0, 5.0, 40.0));
}

// regression: any number of symbols of any content were added to the tracked set for good
// (one 600 KB job: 60,000 symbols, 60,000 keys, every later fetch 1,500 times slower).
#[tokio::test]
async fn market_data_symbols_are_checked_before_anything_is_tracked() {
    let feed = FixedFeed([("AAA".to_owned(), 1.0)].into_iter().collect());
    let p = redis_platform("market_bad").await.with_market_source(Arc::new(feed));
    let queue = JobQueue::memory();
    let many: Vec<String> = (0..101).map(|i| format!("S{i}")).collect();
    for (symbols, words) in [
        (many, &["at most 100", "101"][..]),
        (vec!["AAA".into(), "aapl".into()], &["aapl", "A-Z"][..]),
        (vec![String::new()], &["1 to 16"][..]),
        (vec!["X".repeat(17)], &["1 to 16"][..]),
        (vec!["A\nERROR forged".into()], &["\\n"][..]),
        (vec!["BTC USD".into()], &["BTC USD"][..]),
    ] {
        let args = FetchMarketData { symbols: Some(symbols.clone()) };
        match fetch_market_data(args, ctx(&p, &queue, "fetch_market_data")).await {
            Ok(out) => panic!("{symbols:?} accepted: {out:?}"),
            Err(e) => {
                assert!(!e.is_retryable(), "{symbols:?}: a bad symbol is permanent");
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "{msg}");
                for w in words {
                    assert!(msg.contains(w), "{symbols:?}: `{msg}` should say `{w}`");
                }
            }
        }
    }
    assert!(p.store().symbols().await.expect("symbols").is_empty(), "nothing was tracked");
    // The seed's symbols are all fine, and a hundred of them too.
    let ok: Vec<String> = ["AAPL", "BTC-USD", "BRK.B", "SPY"].map(String::from).to_vec();
    jobs_tasks::market::check_symbols(&ok).expect("valid symbols");
    let hundred: Vec<String> = (0..100).map(|i| format!("S{i}")).collect();
    jobs_tasks::market::check_symbols(&hundred).expect("a hundred symbols");
}

#[tokio::test]
async fn daily_report_and_one_summary_per_user_and_day() {
    let p = redis_platform("reports").await;
    seed_demo(&p, &DemoConfig { users: 3, ..DemoConfig::default() }).await.expect("seed");
    let queue = JobQueue::memory();

    let report = generate_daily_report(
        GenerateDailyReport::default(),
        ctx(&p, &queue, "generate_daily_report"),
    )
    .await
    .expect("report");
    assert_eq!(report.users, 3);
    assert!(report.total_value > 0.0);
    assert_eq!(report.trades, 3, "one trade per user in the last 24 h (12 h old)");
    assert_eq!(report.top_movers.len(), 5);
    assert_eq!(report.bots.values().sum::<usize>(), 4);
    let stored = p.store().report(report.date).await.expect("read").expect("stored");
    assert_eq!(stored, report);

    let sent = send_daily_summary_emails(ctx(&p, &queue, "send_daily_summary_emails"))
        .await
        .expect("send");
    assert_eq!((sent.sent, sent.skipped, sent.generated_report), (3, 0, false));
    let rerun = send_daily_summary_emails(ctx(&p, &queue, "send_daily_summary_emails"))
        .await
        .expect("send");
    assert_eq!((rerun.sent, rerun.skipped), (0, 3));
    let outbox = p.store().outbox(100).await.expect("outbox");
    let mut to: Vec<&str> = outbox.iter().map(|e| e.to.as_str()).collect();
    to.sort();
    assert_eq!(to, ["user-001@example.com", "user-002@example.com", "user-003@example.com"]);
    assert!(outbox.iter().all(|e| e.body.contains("Top movers")));
}

#[tokio::test]
async fn demo_data_is_deterministic_and_the_same_in_both_stores() {
    let now = Utc::now();
    let cfg = DemoConfig { users: 6, ..DemoConfig::default() };
    let [(_, memory), (_, redis), (_, cluster)] = both("seed").await;
    let other = redis_platform("seed").await;
    let a = seed_demo_at(&memory, &cfg, now).await.expect("seed memory");
    let b = seed_demo_at(&redis, &cfg, now).await.expect("seed redis");
    let c = seed_demo_at(&cluster, &cfg, now).await.expect("seed cluster");
    assert_eq!(without_cleared(&a), without_cleared(&b));
    assert_eq!(without_cleared(&a), without_cleared(&c));
    seed_demo_at(&other, &cfg, now).await.expect("seed again");
    for p in [&redis, &other, &cluster] {
        assert_eq!(p.store().users().await.expect("u"), memory.store().users().await.expect("u"));
        for u in memory.store().users().await.expect("users") {
            assert_eq!(
                p.store().positions(&u.id).await.expect("p"),
                memory.store().positions(&u.id).await.expect("p")
            );
        }
        assert_eq!(p.store().alerts().await.expect("a"), memory.store().alerts().await.expect("a"));
        assert_eq!(p.store().bots().await.expect("b"), memory.store().bots().await.expect("b"));
        assert_eq!(p.store().limits().await.expect("l"), memory.store().limits().await.expect("l"));
        assert_eq!(
            p.store().history("BTC-USD", now - chrono::Duration::days(2)).await.expect("h"),
            memory.store().history("BTC-USD", now - chrono::Duration::days(2)).await.expect("h")
        );
    }
    // Seeding again replaces the data rather than adding to it.
    let again = seed_demo_at(&redis, &DemoConfig { users: 2, ..cfg }, now).await.expect("reseed");
    assert!(again.cleared > 0);
    assert_eq!(redis.store().users().await.expect("users").len(), 2);
    // On the cluster too, key for key: the clearing SCAN goes to the namespace's node.
    let on_cluster =
        seed_demo_at(&cluster, &DemoConfig { users: 2, ..cfg }, now).await.expect("reseed");
    assert_eq!(on_cluster.cleared, again.cleared);
    assert_eq!(cluster.store().users().await.expect("users").len(), 2);

    // The demo leaves work for the tasks: crossed alerts, stale bots, breaches.
    let queue = JobQueue::memory();
    let alerts =
        check_price_alerts(ctx(&memory, &queue, "check_price_alerts")).await.expect("check");
    assert_eq!(alerts.triggered, 2, "users 3 and 6 have a crossed alert");
    let health = bot_health_check(ctx(&memory, &queue, "bot_health_check")).await.expect("check");
    assert_eq!(health.newly_unhealthy, 3, "{health:?}");
    let risk =
        evaluate_risk_limits(ctx(&memory, &queue, "evaluate_risk_limits")).await.expect("eval");
    assert!(risk.new_breaches >= 1, "user 4 has tight limits: {risk:?}");
}

fn without_cleared(s: &jobs_tasks::seed::DemoSummary) -> jobs_tasks::seed::DemoSummary {
    jobs_tasks::seed::DemoSummary { cleared: 0, ..s.clone() }
}

#[test]
fn every_task_and_default_schedule_is_registered() {
    let registry = jobs_core::Registry::global().expect("registry builds");
    let mut names: Vec<&str> = registry.handlers().map(|h| h.name()).collect();
    names.sort_unstable();
    assert_eq!(names, jobs_tasks::TASK_NAMES);
    let mut schedules: Vec<(&str, &str)> =
        registry.schedules().map(|s| (s.name, s.handler)).collect();
    schedules.sort_unstable();
    assert_eq!(schedules, jobs_tasks::SCHEDULE_NAMES);
    use jobs_core::ScheduleKind::{Cron, Interval};
    let expect = [
        ("portfolio_sync", Interval { secs: 300 }, JobPriority::Normal),
        ("risk_monitoring", Interval { secs: 60 }, JobPriority::High),
        ("bot_health_check", Interval { secs: 120 }, JobPriority::High),
        ("data_cleanup", Cron { expr: "0 3 * * *" }, JobPriority::Low),
        ("database_vacuum", Cron { expr: "0 4 * * 0" }, JobPriority::Low),
        ("daily_summary", Cron { expr: "0 8 * * *" }, JobPriority::Normal),
    ];
    for (name, kind, priority) in expect {
        let s = registry.schedule(name).expect(name);
        assert_eq!((s.kind, s.priority), (kind, Some(priority)), "{name}");
    }
}
