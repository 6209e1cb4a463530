//! Listing jobs by state (`list_jobs`): each state's index, newest first, filtered by
//! handler and user, paged by cursor, at most `LIST_SCAN_LIMIT` entries examined a call.

use chrono::{DateTime, Utc};
use jobs_core::backend::{
    FailOutcome, JobPage, LIST_SCAN_LIMIT, ListCursor, ListRequest, ListState,
};
use jobs_core::{Error, JobId, JobStatus, NewJob, RunAt};
use serde_json::json;

use crate::{Env, Kind, LEASE, TestResult, failure, ids, late_retry, ms};

conformance!(
    list_jobs_lists_each_state_newest_first,
    list_jobs_filters_by_name_and_user,
    list_jobs_pages_by_cursor,
    list_jobs_examines_at_most_the_scan_limit,
    list_jobs_refuses_a_cursor_of_another_state,
);

/// An instant `offset_ms` after a whole millisecond an hour from now (due times are kept
/// in milliseconds: equal instants give equal index scores, ties).
fn at(base: i64, offset_ms: i64) -> RunAt {
    RunAt::Time(DateTime::<Utc>::from_timestamp_millis(base + offset_ms).unwrap_or_default())
}

fn base() -> i64 {
    Utc::now().timestamp_millis() + 3_600_000
}

fn delayed(name: &str, run_at: RunAt) -> NewJob {
    NewJob { run_at, ..NewJob::new(name, json!({ "for": name })) }
}

async fn list(env: &Env, req: &ListRequest) -> jobs_core::Result<JobPage> {
    env.b.list_jobs(req).await
}

async fn all(env: &Env, state: ListState) -> Result<Vec<JobId>, crate::BoxError> {
    let page = list(env, &ListRequest::new(state, LIST_SCAN_LIMIT)).await?;
    assert_eq!(page.cursor, None, "a small index is listed whole");
    Ok(ids(&page.jobs))
}

/// Ids sorted as a tie of index scores lists them: larger id first.
fn desc(mut v: Vec<JobId>) -> Vec<JobId> {
    v.sort_by(|a, b| b.cmp(a));
    v
}

async fn list_jobs_lists_each_state_newest_first(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let t = base();
    // Delayed: by due time, latest first; two due at the same millisecond, larger id first.
    let early = env.add_job(delayed("d", at(t, 0))).await?;
    let tie_a = env.add_job(delayed("d", at(t, 10))).await?;
    let tie_b = env.add_job(delayed("d", at(t, 10))).await?;
    let late = env.add_job(delayed("d", at(t, 20))).await?;
    let mut expect = vec![late];
    expect.extend(desc(vec![tie_a, tie_b]));
    expect.push(early);
    assert_eq!(all(&env, ListState::Scheduled).await?, expect);
    let page = list(&env, &ListRequest::new(ListState::Scheduled, 10)).await?;
    assert!(page.jobs.iter().all(|j| j.status == JobStatus::Pending && j.scheduled_at.is_some()));
    assert_eq!(page.jobs[0].args, json!({ "for": "d" }), "listed with its args");

    // Running, then retrying: fetch order is enqueue order for ready jobs.
    let r1 = env.q.enqueue("r", json!({ "n": 1 })).await?;
    let y1 = env.q.enqueue("y", json!({ "n": 2 })).max_retries(3).await?;
    let c1 = env.q.enqueue("c", json!({ "n": 3 })).await?;
    let f1 = env.q.enqueue("f", json!({ "n": 4 })).max_retries(0).await?;
    let x1 = env.q.enqueue("x", json!({ "n": 5 })).await?;
    let before = Utc::now();
    let lr = env.take(r1, LEASE).await?;
    let ly = env.take(y1, LEASE).await?;
    let lc = env.take(c1, LEASE).await?;
    let lf = env.take(f1, LEASE).await?;
    assert!(matches!(
        env.fail(failure(ly.lease, "try again", true, late_retry())).await?,
        FailOutcome::Retrying { .. }
    ));
    env.complete(lc.lease, json!("done")).await?;
    assert_eq!(env.fail(failure(lf.lease, "fatal", true, late_retry())).await?, FailOutcome::Dead);
    env.q.cancel_job(x1).await?;

    let running = list(&env, &ListRequest::new(ListState::Running, 10)).await?;
    assert_eq!(ids(&running.jobs), [r1]);
    let started = running.jobs[0].started_at.ok_or("a running job has its start time")?;
    crate::assert_within("started_at", started, before, Utc::now());
    assert_eq!(running.jobs[0].attempt, lr.lease.attempt);
    assert_eq!(running.jobs[0].args, json!({ "n": 1 }));

    let retrying = list(&env, &ListRequest::new(ListState::Retrying, 10)).await?;
    assert_eq!(ids(&retrying.jobs), [y1]);
    assert_eq!(retrying.jobs[0].status, JobStatus::Retrying);
    assert_eq!(retrying.jobs[0].error.as_deref(), Some("try again"));
    assert_eq!(retrying.jobs[0].args, json!({ "n": 2 }));

    // One retention index holds completed and cancelled jobs: each state lists its own.
    let completed = list(&env, &ListRequest::new(ListState::Completed, 10)).await?;
    assert_eq!(ids(&completed.jobs), [c1]);
    assert_eq!(completed.jobs[0].status, JobStatus::Completed);
    assert_eq!(completed.jobs[0].result, None, "listings carry no results");
    assert_eq!(all(&env, ListState::Cancelled).await?, [x1]);

    let failed = list(&env, &ListRequest::new(ListState::Failed, 10)).await?;
    assert_eq!(ids(&failed.jobs), [f1]);
    assert_eq!(failed.jobs[0].error.as_deref(), Some("fatal"));
    assert_eq!(failed.jobs[0].args, json!({ "n": 4 }));

    // Newest first in the DLQ and the retention index too.
    tokio::time::sleep(ms(3)).await;
    let f2 = env.q.enqueue("f", json!({})).max_retries(0).await?;
    let lf2 = env.take(f2, LEASE).await?;
    env.fail(failure(lf2.lease, "fatal", true, late_retry())).await?;
    assert_eq!(all(&env, ListState::Failed).await?, [f2, f1]);
    tokio::time::sleep(ms(3)).await;
    let x2 = env.q.enqueue("x", json!({})).await?;
    env.q.cancel_job(x2).await?;
    assert_eq!(all(&env, ListState::Cancelled).await?, [x2, x1]);
    assert_eq!(all(&env, ListState::Completed).await?, [c1]);
    Ok(())
}

async fn list_jobs_filters_by_name_and_user(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let t = base();
    let mut made = Vec::new();
    for (i, (name, user)) in [
        ("sync_portfolio", Some("u1")),
        ("sync_portfolio", Some("u2")),
        ("sync", Some("u1")),
        ("sync_portfolio", None),
        // A user id that holds the text of a name filter must not match it.
        ("other", Some("\"n\":\"sync\"")),
    ]
    .into_iter()
    .enumerate()
    {
        let job = NewJob { user_id: user.map(str::to_owned), ..delayed(name, at(t, i as i64)) };
        made.push(env.add_job(job).await?);
    }
    let req = |name: Option<&str>, user: Option<&str>| ListRequest {
        name: name.map(str::to_owned),
        user_id: user.map(str::to_owned),
        ..ListRequest::new(ListState::Scheduled, 100)
    };
    let got = |r: ListRequest| {
        let env = &env;
        async move { list(env, &r).await.map(|p| ids(&p.jobs)) }
    };
    assert_eq!(got(req(Some("sync_portfolio"), None)).await?, [made[3], made[1], made[0]]);
    assert_eq!(got(req(Some("sync"), None)).await?, [made[2]], "the whole name, not a prefix");
    assert_eq!(got(req(None, Some("u1"))).await?, [made[2], made[0]]);
    assert_eq!(got(req(Some("sync_portfolio"), Some("u1"))).await?, [made[0]]);
    assert_eq!(got(req(Some("missing"), None)).await?, Vec::<JobId>::new());
    assert_eq!(got(req(None, Some("\"n\":\"sync\""))).await?, [made[4]]);
    let page = list(&env, &req(Some("sync_portfolio"), Some("u1"))).await?;
    assert_eq!(
        (page.jobs[0].name.as_str(), page.jobs[0].user_id.as_deref()),
        ("sync_portfolio", Some("u1"))
    );
    Ok(())
}

async fn list_jobs_pages_by_cursor(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let t = base();
    // Nine jobs over four due times, so that pages end inside runs of equal scores.
    let mut jobs = Vec::new();
    for i in 0..9 {
        jobs.push(delayed("p", at(t, (i / 3) * 5)));
    }
    let batch: Vec<NewJob> = jobs.clone();
    env.b.enqueue(&batch).await?;
    let whole = all(&env, ListState::Scheduled).await?;
    assert_eq!(whole.len(), 9);

    let mut paged = Vec::new();
    let mut req = ListRequest::new(ListState::Scheduled, 2);
    for _ in 0..10 {
        let page = list(&env, &req).await?;
        assert!(page.jobs.len() <= 2);
        paged.extend(ids(&page.jobs));
        match page.cursor {
            Some(c) => {
                // The cursor's text is all a client keeps.
                req.cursor = Some(ListCursor::parse(&c.to_string(), ListState::Scheduled)?);
            }
            None => break,
        }
    }
    assert_eq!(paged, whole, "the pages, one after another, are the whole listing");

    // A page ending on the last entry has no cursor.
    let page = list(&env, &ListRequest::new(ListState::Scheduled, 9)).await?;
    assert_eq!((page.jobs.len(), page.cursor.is_none()), (9, true));
    let page = list(&env, &ListRequest::new(ListState::Scheduled, 8)).await?;
    assert!(page.cursor.is_some(), "one more follows");

    // The entry a cursor stands at may go (cancelled) before the next page: the listing
    // goes on right after where it was.
    let first = list(&env, &ListRequest::new(ListState::Scheduled, 4)).await?;
    let cursor = first.cursor.ok_or("more follow")?;
    env.q.cancel_job(whole[3]).await?;
    let next = list(
        &env,
        &ListRequest { cursor: Some(cursor), ..ListRequest::new(ListState::Scheduled, 2) },
    )
    .await?;
    assert_eq!(ids(&next.jobs), whole[4..6]);

    // A limit of zero is one.
    assert_eq!(list(&env, &ListRequest::new(ListState::Scheduled, 0)).await?.jobs.len(), 1);
    Ok(())
}

async fn list_jobs_examines_at_most_the_scan_limit(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let t = base();
    // One job of `needle`, due earliest, below LIST_SCAN_LIMIT + 5 jobs of another name, all
    // due at one instant (one run of equal scores that the cursor must cut).
    let needle = env.add_job(delayed("needle", at(t, 0))).await?;
    let hay: Vec<NewJob> = (0..LIST_SCAN_LIMIT + 5).map(|_| delayed("hay", at(t, 1))).collect();
    env.b.enqueue(&hay).await?;
    let req =
        ListRequest { name: Some("needle".into()), ..ListRequest::new(ListState::Scheduled, 10) };
    let first = list(&env, &req).await?;
    assert!(first.jobs.is_empty(), "{} entries examined, none matching", LIST_SCAN_LIMIT);
    let cursor = first.cursor.ok_or("a cursor to go on with although nothing matched")?;
    let second = list(&env, &ListRequest { cursor: Some(cursor), ..req.clone() }).await?;
    assert_eq!(ids(&second.jobs), [needle]);
    assert_eq!(second.cursor, None);

    // Unfiltered, the hay pages in full pages of the limit, the first LIST_SCAN_LIMIT at most.
    let big = list(&env, &ListRequest::new(ListState::Scheduled, usize::MAX)).await?;
    assert_eq!(big.jobs.len(), LIST_SCAN_LIMIT);
    let rest = list(
        &env,
        &ListRequest { cursor: big.cursor, ..ListRequest::new(ListState::Scheduled, 100) },
    )
    .await?;
    assert_eq!(rest.jobs.len(), 6);
    assert_eq!(rest.jobs.last().map(|j| j.id), Some(needle));
    Ok(())
}

async fn list_jobs_refuses_a_cursor_of_another_state(kind: Kind) -> TestResult {
    let env = Env::open(kind).await;
    let t = base();
    env.b.enqueue(&[delayed("a", at(t, 0)), delayed("a", at(t, 1))]).await?;
    let page = list(&env, &ListRequest::new(ListState::Scheduled, 1)).await?;
    let text = page.cursor.ok_or("more follow")?.to_string();
    assert!(matches!(
        ListCursor::parse(&text, ListState::Failed),
        Err(Error::InvalidCursor { .. })
    ));
    assert!(matches!(
        ListCursor::parse("garbage", ListState::Failed),
        Err(Error::InvalidCursor { .. })
    ));
    assert!(matches!(
        ListCursor::parse("s.x.y", ListState::Scheduled),
        Err(Error::InvalidCursor { .. })
    ));
    let c = ListCursor::parse(&text, ListState::Scheduled)?;
    let err =
        list(&env, &ListRequest { cursor: Some(c), ..ListRequest::new(ListState::Retrying, 1) })
            .await
            .err()
            .ok_or("a cursor of another state is refused")?;
    assert!(matches!(err, Error::InvalidCursor { .. }), "{err:?}");
    Ok(())
}
