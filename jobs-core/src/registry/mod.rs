//! The handlers and schedules linked into this process, collected at link time with
//! `inventory` and indexed once by name.
//!
//! Every `#[job_handler]` (and every schedule attribute) submits a [`HandlerRegistration`]
//! (and a [`ScheduleRegistration`]). [`Registry::from_inventory`] gathers them, refusing two
//! handlers (or two schedules) with one name and naming both source locations.
//!
//! # Linking
//!
//! `inventory` only sees crates that end up linked into the binary. A runner binary must
//! therefore reference every crate that defines handlers, even if it calls nothing in it:
//!
//! ```ignore
//! use my_tasks as _; // links my_tasks, so its handlers are registered
//! ```

mod registration;

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use crate::error::Error;
use crate::job::JobPriority;

pub use registration::{HandlerRegistration, Location, ScheduleKind, ScheduleRegistration};

inventory::collect!(HandlerRegistration);
inventory::collect!(ScheduleRegistration);

/// A schedule in the [`Registry`], with its arguments evaluated and checked against its
/// handler.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleDef {
    /// The schedule's name.
    pub name: &'static str,
    /// The handler it enqueues.
    pub handler: &'static str,
    /// When it fires.
    pub kind: ScheduleKind,
    /// The priority of its jobs (`None`: the handler's, then the queue's default).
    pub priority: Option<JobPriority>,
    /// The arguments of its jobs.
    pub args: serde_json::Value,
    /// Where it was defined.
    pub location: Location,
}

/// Why a [`Registry`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two handlers share a name.
    #[error("job handler `{name}` is registered twice: at {first} and at {second}")]
    DuplicateHandler {
        /// The name.
        name: String,
        /// One definition.
        first: Location,
        /// The other.
        second: Location,
    },
    /// Two schedules share a name.
    #[error("schedule `{name}` is registered twice: at {first} and at {second}")]
    DuplicateSchedule {
        /// The name.
        name: String,
        /// One definition.
        first: Location,
        /// The other.
        second: Location,
    },
    /// A schedule names a handler that is not registered.
    #[error(
        "schedule `{schedule}` at {location} enqueues `{handler}`, which is not a registered handler"
    )]
    UnknownHandler {
        /// The schedule.
        schedule: String,
        /// The handler it names.
        handler: String,
        /// Where the schedule was defined.
        location: Location,
    },
    /// A schedule's arguments do not fit its handler.
    #[error("schedule `{schedule}` at {location} has invalid arguments for `{handler}`: {message}")]
    InvalidScheduleArgs {
        /// The schedule.
        schedule: String,
        /// Its handler.
        handler: String,
        /// What does not fit.
        message: String,
        /// Where the schedule was defined.
        location: Location,
    },
    /// A `by` of a handler names a field that its arguments' JSON Schema does not have
    /// (a Rust field renamed for serde, say): its keys could never be derived.
    #[error(
        "job handler `{handler}` at {location} names `{field}` in a `by`, but its arguments \
         have no such JSON field (is it renamed with serde?)"
    )]
    UnknownByField {
        /// The handler.
        handler: String,
        /// The field.
        field: String,
        /// Where the handler was defined.
        location: Location,
    },
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        Error::Config(e.to_string())
    }
}

/// Every handler and schedule of this process, by name.
///
/// ```rust,standalone_crate
/// use jobs_core::prelude::*;
/// use jobs_core::{Registry, ScheduleKind};
///
/// #[every_minutes(5)]
/// async fn refresh_prices() -> Result<(), JobError> {
///     Ok(())
/// }
///
/// let registry = Registry::global()?;
/// let handler = registry.handler("refresh_prices").expect("linked");
/// assert_eq!(handler.args_type(), "()");
/// let schedule = registry.schedule("refresh_prices").expect("linked");
/// assert_eq!(schedule.kind, ScheduleKind::Interval { secs: 300 });
/// # Ok::<(), jobs_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<&'static str, HandlerRegistration>,
    schedules: BTreeMap<&'static str, ScheduleDef>,
}

impl Registry {
    /// The registry of every handler and schedule linked into this process.
    ///
    /// Logs each registered name at `info`. Fails on duplicate names (both locations in the
    /// error), on schedules whose handler is missing, and on schedule arguments that do not
    /// fit their handler.
    pub fn from_inventory() -> Result<Registry, RegistryError> {
        let reg = Self::from_parts(
            inventory::iter::<HandlerRegistration>.into_iter().copied(),
            inventory::iter::<ScheduleRegistration>.into_iter().copied(),
        )?;
        for h in reg.handlers() {
            tracing::info!(handler = h.name(), location = %h.location(), "registered job handler");
        }
        for s in reg.schedules() {
            tracing::info!(schedule = s.name, handler = s.handler, kind = %s.kind, "registered schedule");
        }
        Ok(reg)
    }

    /// The registry built once from the inventory, shared by the whole process.
    pub fn global() -> Result<&'static Registry, RegistryError> {
        static GLOBAL: OnceLock<Result<Registry, RegistryError>> = OnceLock::new();
        GLOBAL.get_or_init(Self::from_inventory).as_ref().map_err(Clone::clone)
    }

    /// A registry of the given registrations (for tests and hand-built setups).
    pub fn from_parts(
        handlers: impl IntoIterator<Item = HandlerRegistration>,
        schedules: impl IntoIterator<Item = ScheduleRegistration>,
    ) -> Result<Registry, RegistryError> {
        // Sort first so that which duplicate is "first" does not depend on link order.
        let mut hs: Vec<HandlerRegistration> = handlers.into_iter().collect();
        hs.sort_by_key(|h| (h.name(), h.location().file, h.location().line));
        let mut by_name = BTreeMap::new();
        for h in hs {
            if let Some(prev) = by_name.insert(h.name(), h) {
                return Err(RegistryError::DuplicateHandler {
                    name: h.name().to_owned(),
                    first: prev.location(),
                    second: h.location(),
                });
            }
        }

        for h in by_name.values() {
            let flow = h.flow();
            if flow.by_fields().next().is_none() {
                continue;
            }
            if let Some(field) = h.args_schema().and_then(|s| flow.field_missing_from(&s)) {
                return Err(RegistryError::UnknownByField {
                    handler: h.name().to_owned(),
                    field: field.to_owned(),
                    location: h.location(),
                });
            }
        }

        let mut ss: Vec<ScheduleRegistration> = schedules.into_iter().collect();
        ss.sort_by_key(|s| (s.name(), s.location().file, s.location().line));
        let mut sched = BTreeMap::new();
        for s in ss {
            if let Some(prev) = sched.get(s.name()) {
                let prev: &ScheduleDef = prev;
                return Err(RegistryError::DuplicateSchedule {
                    name: s.name().to_owned(),
                    first: prev.location,
                    second: s.location(),
                });
            }
            let Some(handler) = by_name.get(s.handler()) else {
                return Err(RegistryError::UnknownHandler {
                    schedule: s.name().to_owned(),
                    handler: s.handler().to_owned(),
                    location: s.location(),
                });
            };
            let invalid = |message: String| RegistryError::InvalidScheduleArgs {
                schedule: s.name().to_owned(),
                handler: s.handler().to_owned(),
                message,
                location: s.location(),
            };
            let args = s.args().map_err(invalid)?;
            handler.validate_args(&args).map_err(invalid)?;
            sched.insert(
                s.name(),
                ScheduleDef {
                    name: s.name(),
                    handler: s.handler(),
                    kind: s.kind(),
                    priority: s.priority(),
                    args,
                    location: s.location(),
                },
            );
        }
        Ok(Registry { handlers: by_name, schedules: sched })
    }

    /// The handler registered under `name`.
    pub fn handler(&self, name: &str) -> Option<&HandlerRegistration> {
        self.handlers.get(name)
    }

    /// Every handler, by name.
    pub fn handlers(&self) -> impl ExactSizeIterator<Item = &HandlerRegistration> {
        self.handlers.values()
    }

    /// The queues its handlers name (`queue = ..`), each once, by name: what a worker
    /// serves by default, each weighing 1 ([`WorkerConfig::queues`](crate::worker::WorkerConfig::queues)).
    /// Just the default queue when none names one.
    pub fn queue_selection(&self) -> crate::QueueSelection {
        let mut names: Vec<&str> = self.handlers().map(|h| h.flow().queue).collect();
        names.sort_unstable();
        names.dedup();
        crate::QueueSelection::weighted(names.into_iter().map(|n| (n, 1))).unwrap_or_default()
    }

    /// The schedule registered under `name`.
    pub fn schedule(&self, name: &str) -> Option<&ScheduleDef> {
        self.schedules.get(name)
    }

    /// Every schedule, by name.
    pub fn schedules(&self) -> impl ExactSizeIterator<Item = &ScheduleDef> {
        self.schedules.values()
    }
}

/// The handlers linked into this process by name (the first of duplicates wins), independent
/// of whether the full [`Registry`] builds, so that enqueue validation keeps working.
fn linked_handlers() -> &'static HashMap<&'static str, HandlerRegistration> {
    static INDEX: OnceLock<HashMap<&'static str, HandlerRegistration>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut m = HashMap::new();
        for h in inventory::iter::<HandlerRegistration> {
            m.entry(h.name()).or_insert(*h);
        }
        m
    })
}

/// The handler `name` linked into this process, if any (without building the [`Registry`]).
pub fn linked_handler(name: &str) -> Option<&'static HandlerRegistration> {
    linked_handlers().get(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::JobContext;
    use crate::handler::rt;
    use crate::handler::{BoxFuture, JobError};
    use crate::options::HandlerDefaults;

    fn call_ok(
        _: serde_json::Value,
        _: JobContext,
    ) -> BoxFuture<Result<serde_json::Value, JobError>> {
        Box::pin(async { Ok(serde_json::Value::Null) })
    }

    #[derive(serde::Serialize, serde::Deserialize, Default)]
    struct Args {
        user_id: String,
        count: u32,
    }

    fn loc(line: u32) -> Location {
        Location { file: "src/app.rs", line, module_path: "app" }
    }

    fn handler(name: &'static str, line: u32) -> HandlerRegistration {
        HandlerRegistration::new(
            name,
            call_ok,
            rt::validate::<Args>,
            rt::type_name_of::<Args>,
            true,
            HandlerDefaults {
                max_retries: Some(5),
                priority: Some(JobPriority::High),
                ..HandlerDefaults::NONE
            },
            loc(line),
        )
    }

    fn schedule(name: &'static str, handler: &'static str, line: u32) -> ScheduleRegistration {
        ScheduleRegistration::new(
            name,
            handler,
            ScheduleKind::Interval { secs: 60 },
            None,
            rt::default_args::<Args>,
            loc(line),
        )
    }

    #[test]
    fn duplicate_handlers_name_both_locations() {
        let err =
            Registry::from_parts([handler("a", 10), handler("b", 20), handler("a", 30)], []).err();
        assert_eq!(
            err,
            Some(RegistryError::DuplicateHandler {
                name: "a".into(),
                first: loc(10),
                second: loc(30)
            })
        );
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            "job handler `a` is registered twice: at src/app.rs:10 and at src/app.rs:30"
        );
    }

    #[test]
    fn duplicate_schedules_are_refused() {
        let err =
            Registry::from_parts([handler("a", 1)], [schedule("s", "a", 7), schedule("s", "a", 3)])
                .err();
        assert_eq!(
            err,
            Some(RegistryError::DuplicateSchedule {
                name: "s".into(),
                first: loc(3),
                second: loc(7)
            })
        );
    }

    #[test]
    fn schedules_must_name_a_registered_handler() {
        let err = Registry::from_parts([handler("a", 1)], [schedule("s", "nope", 2)]).err();
        assert!(matches!(err, Some(RegistryError::UnknownHandler { .. })), "{err:?}");
    }

    #[test]
    fn schedule_args_are_checked_against_the_handler() {
        fn bad_args() -> Result<serde_json::Value, String> {
            Ok(serde_json::json!({"user_id": 5, "count": 1}))
        }
        let s = ScheduleRegistration::new(
            "s",
            "a",
            ScheduleKind::Cron { expr: "0 8 * * *" },
            None,
            bad_args,
            loc(2),
        );
        let err = Registry::from_parts([handler("a", 1)], [s]).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "schedule `s` at src/app.rs:2 has invalid arguments for `a`: \
                 field `user_id`: invalid type: integer `5`, expected a string"
            )
        );
    }

    #[test]
    fn lookup_and_metadata() -> Result<(), RegistryError> {
        let reg =
            Registry::from_parts([handler("b", 2), handler("a", 1)], [schedule("s", "a", 3)])?;
        let names: Vec<&str> = reg.handlers().map(|h| h.name()).collect();
        assert_eq!(names, ["a", "b"]);
        let a = reg.handler("a").ok_or_else(|| unreachable_err("a"))?;
        assert_eq!(a.defaults().max_retries, Some(5));
        assert_eq!(a.defaults().priority, Some(JobPriority::High));
        assert_eq!(a.defaults().timeout, None);
        assert!(a.args_type().ends_with("Args"), "{}", a.args_type());
        assert_eq!(a.location().to_string(), "src/app.rs:1");
        assert!(reg.handler("c").is_none());
        let s = reg.schedule("s").ok_or_else(|| unreachable_err("s"))?;
        assert_eq!(s.handler, "a");
        assert_eq!(s.kind, ScheduleKind::Interval { secs: 60 });
        assert_eq!(s.args, serde_json::json!({"user_id": "", "count": 0}));
        Ok(())
    }

    #[test]
    fn flow_declarations_are_carried() -> Result<(), RegistryError> {
        use crate::flow::{FlowControl, RateLimit};
        const RATES: &[RateLimit] =
            &[RateLimit { max: 10, per: std::time::Duration::from_secs(1), by: &["user_id"] }];
        let limited = handler("a", 1).with_flow(FlowControl {
            queue: "payments",
            rate_limits: RATES,
            ..FlowControl::DEFAULT
        });
        let reg = Registry::from_parts([limited, handler("b", 2)], [])?;
        let a = reg.handler("a").ok_or_else(|| unreachable_err("a"))?;
        assert_eq!(a.queue(), "payments");
        assert_eq!(a.flow().rate_limits, RATES);
        assert!(format!("{a:?}").contains("payments"));
        let b = reg.handler("b").ok_or_else(|| unreachable_err("b"))?;
        assert_eq!(b.flow(), FlowControl::DEFAULT);
        assert_eq!(b.queue(), "default");
        Ok(())
    }

    #[test]
    fn a_by_field_missing_from_the_args_schema_is_refused() {
        use crate::flow::{ConcurrencyLimit, FlowControl};
        fn schema() -> Option<serde_json::Value> {
            Some(serde_json::json!({"type": "object", "properties": {"userId": {}}}))
        }
        let flow = |by: &'static [&'static str]| FlowControl {
            concurrency: Some(ConcurrencyLimit { max: 1, by }),
            ..FlowControl::DEFAULT
        };
        let renamed = handler("a", 4).with_args_schema(schema).with_flow(flow(&["user_id"]));
        let err = Registry::from_parts([renamed], []).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "job handler `a` at src/app.rs:4 names `user_id` in a `by`, but its arguments \
                 have no such JSON field (is it renamed with serde?)"
            )
        );
        let fine = handler("a", 4).with_args_schema(schema).with_flow(flow(&["userId"]));
        assert!(Registry::from_parts([fine], []).is_ok());
        // Without a schema there is nothing to check against.
        assert!(Registry::from_parts([handler("a", 4).with_flow(flow(&["x"]))], []).is_ok());
    }

    #[test]
    fn argument_errors_name_the_field() -> Result<(), RegistryError> {
        let reg = Registry::from_parts([handler("a", 1)], [])?;
        let a = reg.handler("a").ok_or_else(|| unreachable_err("a"))?;
        let missing = a.check_args(&serde_json::json!({"count": 1})).map_err(|e| e.to_string());
        assert_eq!(
            missing,
            Err("invalid arguments for job `a`: missing field `user_id`".to_owned())
        );
        let wrong = a
            .check_args(&serde_json::json!({"user_id": "u", "count": "x"}))
            .map_err(|e| e.to_string());
        assert_eq!(
            wrong,
            Err("invalid arguments for job `a`: field `count`: invalid type: string \"x\", expected u32".to_owned())
        );
        assert!(a.check_args(&serde_json::json!({"user_id": "u", "count": 2})).is_ok());
        Ok(())
    }

    #[test]
    fn handlers_without_arguments_accept_null_or_empty_object() {
        assert!(rt::validate_none(&serde_json::Value::Null).is_ok());
        assert!(rt::validate_none(&serde_json::json!({})).is_ok());
        assert!(rt::validate_none(&serde_json::json!({"a": 1})).is_err());
    }

    fn unreachable_err(name: &str) -> RegistryError {
        RegistryError::UnknownHandler {
            schedule: String::new(),
            handler: name.into(),
            location: loc(0),
        }
    }
}
