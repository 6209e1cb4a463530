//! Attribute macros for `jobs-core`. Use them through `jobs_core` (or
//! `jobs_core::prelude`), which re-exports them; generated code names only
//! `::jobs_core::__private`.
//!
//! # Handler functions
//!
//! Every attribute here goes on a free `async fn` whose signature is one of:
//!
//! | signature | arguments | context |
//! |---|---|---|
//! | `async fn f(args: T, ctx: JobContext) -> Ret` | `T` | yes |
//! | `async fn f(args: T) -> Ret` | `T` | no |
//! | `async fn f(ctx: JobContext) -> Ret` | none (`()`) | yes |
//! | `async fn f() -> Ret` | none (`()`) | no |
//!
//! * `T: Serialize + DeserializeOwned + Send + 'static` (derive both serde traits). The
//!   parameter may be a pattern (`SyncPortfolio { user_id }: SyncPortfolio`).
//! * The context parameter is recognised by its type being spelled `JobContext` (any path
//!   ending in it, e.g. `jobs_core::JobContext`); it comes last.
//! * `Ret` is `Result<R, E>` with `R: Serialize` (the job's stored result; `()` gives `null`)
//!   and `E` converting into `JobError` (`JobError` itself, or any
//!   `std::error::Error + Send + Sync + 'static`); or nothing, which counts as `Ok(())`.
//! * Not allowed: a non-`async` fn, `self`, generics (including `impl Trait` parameters),
//!   more than two parameters, `const`/`unsafe`/`extern` functions. Each is a compile error
//!   pointing at the offending tokens.
//! * The future must be `Send` (workers run handlers on a multi-threaded runtime).
//!
//! The function stays exactly as written, so it can be called and unit-tested directly.
//! Next to it the macros add a unit struct named after it (`sync_portfolio` →
//! `SyncPortfolioJob`) implementing `JobDefinition`, for typed enqueue, and register the
//! handler (and its schedules) with `inventory`.
//!
//! Arguments that do not decode into `T` when a job runs fail it permanently (straight to the
//! dead-letter queue): retrying cannot fix them.
//!
//! # Linking
//!
//! Handlers are collected at link time: a binary sees the handlers of the crates it links.
//! A runner that calls nothing in a task crate must still name it: `use my_tasks as _;`.

mod attrs;
mod expand;
mod flow;
mod job_handler;
mod schedule;

#[cfg(test)]
mod fuzz_tests;

use proc_macro::TokenStream;

use attrs::Kind;

/// Registers an `async fn` as the job handler `name`.
///
/// ```text
/// #[job_handler("name", max_retries = 5, timeout = "30s", priority = "high",
///     queue = "payments", unique(...), rate_limit(...), concurrency(...))]
/// ```
///
/// * `"name"`: the job's name, stored with every job (renaming it is a data migration).
///   Defaults to the function's name.
/// * `max_retries = N`: retries before the job is dead-lettered (at most 1000).
/// * `timeout = "30s"`: how long one attempt may run: a number with `ms`, `s`, `m`, `h` or
///   `d`, or a plain number of seconds (`timeout = 30`); at most 7 days.
/// * `priority = "high"`: `critical`, `high`, `normal` or `low`.
/// * `retry_base = "10s"`, `retry_cap = "5m"`: this handler's retry backoff (durations as
///   for `timeout`, at most 365 days, the base at most the cap): the first retry waits
///   `retry_base`, each later one twice as long, up to `retry_cap`.
/// * `queue = "payments"`: the named queue of its jobs (1 to 64 of `A-Za-z0-9_.-`; default
///   `"default"`). See [Flow control](#flow-control).
/// * `unique(by = [field, ...], for = "10m", until = "done", on_conflict = "keep")`,
///   `rate_limit(max = 10, per = "1s", by = [field, ...])` (may be given several times),
///   `concurrency(max = 1, by = [field, ...])`: see [Flow control](#flow-control).
///
/// Options left out fall back to the queue's defaults (3 retries, 300 s, normal; the
/// backoff of the worker that fails the job, 2 minutes doubling up to an hour by
/// default); options given when enqueueing override these. See the [crate docs](crate) for the accepted
/// signatures. Combine it with a schedule attribute in either order.
///
/// # Example
///
/// ```
/// use jobs_core::prelude::*;
///
/// #[derive(Serialize, Deserialize)]
/// struct SyncPortfolio { user_id: String }
///
/// #[derive(Serialize)]
/// struct Report { positions: usize }
///
/// #[job_handler("sync_portfolio", max_retries = 5, timeout = "30s", priority = "high")]
/// async fn sync_portfolio(args: SyncPortfolio, ctx: JobContext) -> Result<Report, JobError> {
///     let _follow_up = ctx.queue(); // enqueue more work from here
///     Ok(Report { positions: args.user_id.len() })
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> jobs_core::Result<()> {
/// // Enqueue it by type: the wrong argument type does not compile.
/// let queue = JobQueue::memory();
/// queue.enqueue_typed::<SyncPortfolioJob>(SyncPortfolio { user_id: "u1".into() }).await?;
/// # Ok(())
/// # }
/// ```
///
/// A handler must be `async`:
///
/// ```compile_fail
/// use jobs_core::prelude::*;
///
/// #[job_handler("cleanup")]
/// fn cleanup() -> Result<(), JobError> { // error: #[job_handler] requires an `async fn`
///     Ok(())
/// }
/// ```
///
/// # Flow control
///
/// Declared on the handler, checked at compile time, registered as `&'static` data
/// (`jobs_core::FlowControl`, read with `Registry::handler(name).flow()`) and listed by the
/// API and the runner's `handlers` command. `unique(...)` is enforced by the queue's enqueue
/// (see `jobs_core::UniqueLock`), `queue` by the workers' fetch, and `rate_limit` and
/// `concurrency` by the fetch too, on the keys the enqueue computes from the arguments
/// (see `jobs_core::JobLimits` and `jobs_core::backend::limits`): a job over a limit is
/// parked until a slot opens, never blocking other keys.
///
/// * `unique(...)`: while the window of a job with the same key is open, an enqueue creates
///   no job. `for = "10m"` (required: the lock's upper bound); `until = "done"` (default:
///   while queued, running or waiting for a retry) or `"started"` (while queued);
///   `on_conflict = "keep"` (default: the existing job stays) or `"replace"` (a queued
///   duplicate takes the new arguments); `by` omitted: the key is the whole arguments.
/// * `rate_limit(max = N, per = "1s", by = [...])`: at most `N` starts per period per key;
///   stack several for several windows. Without `by`, one limit for the handler.
/// * `concurrency(max = N, by = [...])`: at most `N` running at once per key. Without `by`,
///   one limit for the handler.
///
/// Durations are `"500ms"`, `"1s"`, `"10m"`, `"2h"`, `"1d"` or a number of seconds, from
/// 1 ms to 365 days. Each field in a `by` must be a field of the argument type, readable
/// from the handler's module; a field it lacks, an argument type that is not a struct, a
/// bad duration, `max = 0`, a key given twice and `by` on a handler without arguments are
/// compile errors at the offending token. The key is read from the job's JSON arguments
/// under the field's Rust name, so a field named in `by` should not be `#[serde(rename)]`d
/// (when the argument type derives `JsonSchema`, the registry refuses such a field at start-up).
///
/// ```
/// use jobs_core::prelude::*;
///
/// #[derive(Serialize, Deserialize)]
/// struct Quotes { exchange: String, symbol: String }
///
/// #[job_handler("fetch_quotes", queue = "market",
///     rate_limit(max = 10, per = "1s", by = [exchange]),
///     rate_limit(max = 500, per = "1m"),
///     concurrency(max = 2, by = [exchange]))]
/// async fn fetch_quotes(args: Quotes) -> Result<(), JobError> {
///     Ok(())
/// }
///
/// let flow = jobs_core::Registry::global()?.handler("fetch_quotes").expect("linked").flow();
/// assert_eq!(flow.queue, "market");
/// assert_eq!(flow.rate_limits[0].by, ["exchange"]);
/// # Ok::<(), jobs_core::RegistryError>(())
/// ```
///
/// A field that the argument type does not have:
///
/// ```compile_fail
/// use jobs_core::prelude::*;
///
/// #[derive(Serialize, Deserialize)]
/// struct Sync { user_id: String }
///
/// #[job_handler("sync_portfolio", unique(by = [user], for = "10m"))] // error: no field `user`
/// async fn sync_portfolio(args: Sync) {}
/// ```
///
/// # Handlers that block
///
/// A handler runs as a task on the worker's tokio runtime, which has few threads. Code that
/// blocks its thread (a CPU-heavy loop, blocking I/O such as `std::fs` or a synchronous
/// database driver, `std::thread::sleep`) holds one of them for as long as it runs: other
/// jobs and everything else queued on that runtime wait behind it, and neither the job's
/// timeout nor a cancel can stop it before it yields. (The worker's heartbeats,
/// acknowledgements and fencing run on a thread of their own, so the leases of the other
/// jobs are kept meanwhile.) Run such code with `tokio::task::spawn_blocking`, on tokio's
/// pool of threads meant for it, and await it. A timeout or cancel then ends the handler's
/// task at once, but not the blocking closure, which runs to its end: in a long one, check
/// the job's cancellation token now and then.
///
/// ```
/// use jobs_core::prelude::*;
///
/// #[derive(Serialize, Deserialize)]
/// struct Checksum { path: String }
///
/// #[job_handler("checksum_file", timeout = "10m")]
/// async fn checksum_file(args: Checksum, ctx: JobContext) -> Result<u64, JobError> {
///     let cancel = ctx.cancellation_token().clone();
///     let sum = tokio::task::spawn_blocking(move || -> Result<u64, JobError> {
///         let mut sum = 0u64;
///         for chunk in std::fs::read(&args.path)?.chunks(1 << 20) {
///             if cancel.is_cancelled() {
///                 return Err(JobError::msg("cancelled"));
///             }
///             sum = chunk.iter().fold(sum, |s, b| s.wrapping_add(u64::from(*b)));
///         }
///         Ok(sum)
///     })
///     .await??; // a panic in the closure is a failed attempt, like a handler's panic
///     Ok(sum)
/// }
/// # fn main() {}
/// ```
///
/// # Expands to roughly
///
/// ```ignore
/// async fn sync_portfolio(args: SyncPortfolio, ctx: JobContext) -> Result<Report, JobError> { /* … */ }
///
/// /// The job handler `sync_portfolio` as a type …
/// #[derive(Debug, Clone, Copy, Default)]
/// struct SyncPortfolioJob;
///
/// const _: () = {
///     impl JobDefinition for SyncPortfolioJob {
///         const NAME: &'static str = "sync_portfolio";
///         type Args = SyncPortfolio; // checked: Serialize + DeserializeOwned
///         const DEFAULTS: HandlerDefaults = HandlerDefaults {
///             max_retries: Some(5),
///             timeout: Some(Duration::from_millis(30_000)),
///             priority: Some(JobPriority::High),
///             retry_base: None,
///             retry_cap: None,
///         };
///     }
///     impl ReturnsResult for SyncPortfolioJob { type Ok = Report; type Err = JobError; }
///
///     fn __jobs_call(args: Value, ctx: JobContext) -> BoxFuture<Result<Value, JobError>> {
///         Box::pin(async move {
///             let args = decode::<SyncPortfolio>(args)?; // a mismatch is permanent
///             finish(sync_portfolio(args, ctx).await)     // Report -> JSON
///         })
///     }
///
///     inventory::submit! {
///         HandlerRegistration::new("sync_portfolio", __jobs_call, validate::<SyncPortfolio>, /* … */
///             Location { file: file!(), line: line!(), module_path: module_path!() })
///         .with_flow(FlowControl { queue: "default", unique: None, rate_limits: &[], concurrency: None })
///     }
///
///     // With `unique(by = [user_id], ...)`: never called; rustc checks the field exists.
///     fn __jobs_by_fields() {
///         let _ = |__jobs_args: &SyncPortfolio| { let _ = &__jobs_args.user_id; };
///     }
/// };
/// ```
#[proc_macro_attribute]
pub fn job_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::JobHandler, attr.into(), item.into()).into()
}

/// Runs the function's handler every `N` minutes (an interval schedule).
///
/// ```text
/// #[every_minutes(N, name = "...", priority = "...", args = ...)]
/// ```
///
/// * `N`: the period in minutes, at least 1.
/// * `name = "..."`: the schedule's name; defaults to the handler's name.
/// * `priority = "..."`: the priority of the jobs it enqueues (default: the handler's).
/// * `args = ...`: the arguments of the jobs it enqueues: inline JSON
///   (`args = {"region": "eu"}`), a JSON string (`args = r#"{"region": "eu"}"#`), or a Rust
///   expression of the argument type (`args = Refresh { region: "eu".into() }`). Without it
///   the argument type's `Default` is used, and an argument type without `Default` is a
///   compile error. JSON is checked against the argument type when the registry is built.
///
/// The function is registered as a handler named after it unless it also carries
/// `#[job_handler]` (in either order). Several schedule attributes may share one function if
/// each but one has a `name`.
///
/// ```
/// use jobs_core::prelude::*;
///
/// #[every_minutes(5)]
/// async fn sync_all_portfolios(ctx: JobContext) -> Result<(), JobError> {
///     Ok(())
/// }
///
/// let schedule = jobs_core::Registry::global()?.schedule("sync_all_portfolios").cloned();
/// assert_eq!(schedule.map(|s| s.kind), Some(jobs_core::ScheduleKind::Interval { secs: 300 }));
/// # Ok::<(), jobs_core::RegistryError>(())
/// ```
///
/// ```compile_fail
/// use jobs_core::prelude::*;
///
/// #[every_minutes(0)] // error: interval must be at least 1 minute, found 0
/// async fn never() {}
/// ```
///
/// # Expands to roughly
///
/// What [`job_handler`] generates (with the function's name), plus:
///
/// ```ignore
/// const _: () = {
///     fn __jobs_schedule_args_0() -> Result<Value, String> { default_args::<()>() }
///     inventory::submit! {
///         ScheduleRegistration::new("sync_all_portfolios", "sync_all_portfolios",
///             ScheduleKind::Interval { secs: 300 }, None, __jobs_schedule_args_0, Location { /* … */ })
///     }
/// };
/// ```
#[proc_macro_attribute]
pub fn every_minutes(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::EveryMinutes, attr.into(), item.into()).into()
}

/// Runs the function's handler every `N` seconds (an interval schedule).
///
/// Takes the same options as [`every_minutes`](macro@every_minutes).
///
/// ```
/// use jobs_core::prelude::*;
///
/// #[derive(Serialize, Deserialize)]
/// struct Probe { target: String }
///
/// #[every_seconds(30, name = "probe_api", priority = "low", args = {"target": "api"})]
/// async fn probe(args: Probe) -> Result<(), JobError> {
///     Ok(())
/// }
///
/// let registry = jobs_core::Registry::global()?;
/// let s = registry.schedule("probe_api").expect("registered");
/// assert_eq!(s.handler, "probe");
/// assert_eq!(s.args, serde_json::json!({"target": "api"}));
/// # Ok::<(), jobs_core::RegistryError>(())
/// ```
///
/// # Expands to roughly
///
/// As [`every_minutes`](macro@every_minutes), with `ScheduleKind::Interval { secs: N }`.
#[proc_macro_attribute]
pub fn every_seconds(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::EverySeconds, attr.into(), item.into()).into()
}

/// Runs the function's handler every day at `H:M` UTC.
///
/// `H` in `0..=23`, `M` in `0..=59`; other values are compile errors. Takes the same options
/// as [`every_minutes`](macro@every_minutes).
///
/// ```
/// use jobs_core::prelude::*;
///
/// #[job_handler("daily_summary", timeout = "10m")]
/// #[daily_at(8, 0)]
/// async fn send_daily_summary_emails(ctx: JobContext) -> Result<(), JobError> {
///     Ok(())
/// }
///
/// let s = jobs_core::Registry::global()?.schedule("daily_summary").cloned();
/// assert_eq!(s.map(|s| s.kind), Some(jobs_core::ScheduleKind::Cron { expr: "0 8 * * *" }));
/// # Ok::<(), jobs_core::RegistryError>(())
/// ```
///
/// ```compile_fail
/// # use jobs_core::prelude::*;
/// #[daily_at(24, 0)] // error: hour must be in 0..=23, found 24
/// async fn midnight() {}
/// ```
///
/// # Expands to roughly
///
/// As [`every_minutes`](macro@every_minutes), with `ScheduleKind::Cron { expr: "M H * * *" }`.
#[proc_macro_attribute]
pub fn daily_at(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::DailyAt, attr.into(), item.into()).into()
}

/// Runs the function's handler on a 5-field cron expression (UTC):
/// `minute hour day-of-month month day-of-week`.
///
/// The expression is checked at compile time by `croner`, the parser the runtime uses
/// (seconds and years are not allowed; 0 and 7 are both Sunday; names such as `MON` and
/// `JAN` work). Takes the same options as [`every_minutes`](macro@every_minutes).
///
/// ```
/// use jobs_core::prelude::*;
///
/// #[cron("30 9 * * 1-5", priority = "high")]
/// async fn market_open_report() -> Result<(), JobError> {
///     Ok(())
/// }
///
/// let s = jobs_core::Registry::global()?.schedule("market_open_report").cloned();
/// assert_eq!(s.map(|s| s.kind), Some(jobs_core::ScheduleKind::Cron { expr: "30 9 * * 1-5" }));
/// # Ok::<(), jobs_core::RegistryError>(())
/// ```
///
/// ```compile_fail
/// # use jobs_core::prelude::*;
/// #[cron("61 * * * *")] // error: invalid cron expression
/// async fn bad() {}
/// ```
///
/// # Expands to roughly
///
/// As [`every_minutes`](macro@every_minutes), with `ScheduleKind::Cron { expr: "..." }`.
#[proc_macro_attribute]
pub fn cron(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::Cron, attr.into(), item.into()).into()
}
