//! The job record as the scripts store it: `<hot state><meta JSON>[\n<args JSON>]` (see
//! `scripts/lib.lua`; the args are kept as long as the record).
//!
//! The hot state is the part scripts test and change: 40 bytes of fixed-width big-endian
//! fields and a generation, which Lua reads and writes with one `struct.unpack` / `pack`
//! and no JSON decoder (decoding JSON in hot scripts doubled their CPU cost in our
//! measurements, REDIS.md §9; the earlier text form, still read for records written before
//! it, cost three times as much per transition as the binary one). The meta JSON is written
//! by the client and never decoded by a script, but for one fixed prefix: a job with a
//! backoff of its own starts it with
//! `{"r":[<base ms>,<cap ms>]` (see [`MetaOut::r`]), which the fail path reads with one
//! anchored match.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::job::{Job, JobId, JobPriority, JobStatus, NewJob, TraceContext};
use crate::time::{duration_ms, ms_to_time};

/// The client-written part of a record.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Meta<'a> {
    /// Handler name.
    #[serde(borrow)]
    pub n: std::borrow::Cow<'a, str>,
    /// User id.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub u: Option<std::borrow::Cow<'a, str>>,
    /// The trace context of the enqueuing span ([`NewJob::trace`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<TraceContext>,
}

/// The client-written part of a record as `enqueue` and `schedule_fire` encode it (read
/// back as [`Meta`]).
#[derive(Serialize)]
pub(super) struct MetaOut<'a> {
    /// The job's own backoff, `[retry_base ms, retry_cap ms]`, each `null` for the failing
    /// worker's; only for a job that sets one, so other records keep their size. The first
    /// key, always: `fail_job` in lib.lua reads it with `^{"r":%[(%w+),(%w+)%]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) r: Option<[Option<u64>; 2]>,
    pub(super) n: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) u: Option<&'a str>,
    /// The trace context ([`NewJob::trace`]), only for a job that has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) t: Option<&'a TraceContext>,
}

impl<'a> MetaOut<'a> {
    /// The meta of `job`.
    pub(super) fn of(job: &'a NewJob) -> Self {
        let r = match (job.retry_base, job.retry_cap) {
            (None, None) => None,
            (b, c) => Some([b.map(duration_ms), c.map(duration_ms)]),
        };
        MetaOut { r, n: &job.name, u: job.user_id.as_deref(), t: job.trace.as_ref() }
    }
}

/// The hot state of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hot {
    pub status: JobStatus,
    pub priority: JobPriority,
    pub attempt: u32,
    pub retry_count: u32,
    pub max_retries: u32,
    pub timeout_ms: u64,
    pub created: i64,
    pub scheduled: i64,
    pub started: i64,
    pub finished: i64,
    /// Its named queue, empty for the default queue.
    pub queue: String,
}

pub(crate) fn status_from_letter(c: u8) -> Option<JobStatus> {
    Some(match c {
        // `k`: parked on a rate or concurrency limiter (limits_lib.lua), pending to readers.
        b'p' | b'k' => JobStatus::Pending,
        b'r' => JobStatus::Running,
        b'c' => JobStatus::Completed,
        b'f' => JobStatus::Failed,
        b'x' => JobStatus::Cancelled,
        b'y' => JobStatus::Retrying,
        _ => return None,
    })
}

/// The length of the binary hot state before its generation (`HOT` in lib.lua).
const HOT_LEN: usize = 40;

/// Splits and reads a record: its hot state, its meta, and its args if it still has them.
pub(crate) fn parse<'r>(id: &str, rec: &'r [u8]) -> Result<(Hot, Meta<'r>, Option<&'r [u8]>)> {
    let corrupt = |reason: &str| Error::CorruptRecord { id: id.to_owned(), reason: reason.into() };
    let (hot, _, meta) = split_hot(rec).map_err(corrupt)?;
    // Compact JSON never contains a raw newline: the first one ends the meta.
    let (meta, args) = match meta.iter().position(|&b| b == b'\n') {
        Some(nl) => (&meta[..nl], Some(&meta[nl + 1..])),
        None => (meta, None),
    };
    let meta: Meta<'_> =
        serde_json::from_slice(meta).map_err(|e| corrupt(&format!("meta is not valid: {e}")))?;
    Ok((hot, meta, args))
}

/// A record's hot state, its generation (empty if none) and the rest (meta and args), in
/// either form lib.lua reads: the binary one it writes, or the text one of earlier versions.
/// The second byte tells them apart: the priority, raw (0..=3) or as a digit.
fn split_hot(rec: &[u8]) -> std::result::Result<(Hot, &[u8], &[u8]), &'static str> {
    let status =
        status_from_letter(*rec.first().ok_or("state too short")?).ok_or("unknown status")?;
    match rec.get(1) {
        Some(&b) if (b'0'..64).contains(&b) => split_text(status, rec),
        Some(&b) => split_binary(status, b, rec),
        None => Err("state too short"),
    }
}

fn split_binary(
    status: JobStatus,
    flags: u8,
    rec: &[u8],
) -> std::result::Result<(Hot, &[u8], &[u8]), &'static str> {
    if rec.len() < HOT_LEN {
        return Err("state too short");
    }
    // 16 is the uniqueness lock's flag (lib.lua) and 128 the limits' one, which the client
    // does not read; 64 says a queue name follows the generation.
    let flags = flags & 127;
    let named = flags >= 64;
    let flags = if named { flags - 64 } else { flags };
    if flags >= 32 {
        return Err("unknown state flags");
    }
    let uint = |at: usize, len: usize| {
        rec[at..at + len].iter().fold(0u64, |v, &b| (v << 8) | u64::from(b))
    };
    // Widths of at most 6 bytes: every field fits its type.
    let ms_at = |at: usize| uint(at, 6) as i64;
    let priority = JobPriority::from_index(usize::from(flags & 3)).ok_or("unknown priority")?;
    let hot = Hot {
        status,
        priority,
        attempt: uint(2, 4) as u32,
        retry_count: uint(6, 2) as u32,
        max_retries: uint(8, 2) as u32,
        timeout_ms: uint(10, 4),
        created: ms_at(16),
        scheduled: ms_at(22),
        started: ms_at(28),
        finished: ms_at(34),
        queue: String::new(),
    };
    let (generation, end) = if flags & 8 == 0 {
        (&rec[..0], HOT_LEN)
    } else {
        let end = HOT_LEN + 1 + usize::from(rec.get(HOT_LEN).copied().ok_or("generation")?);
        let g = rec.get(HOT_LEN + 1..end).ok_or("generation")?;
        if g.is_empty() || !g.iter().all(u8::is_ascii_alphanumeric) {
            return Err("generation");
        }
        (g, end)
    };
    let mut hot = hot;
    let end = if named {
        let len = usize::from(rec.get(end).copied().ok_or("queue name")?);
        let q = rec.get(end + 1..end + 1 + len).ok_or("queue name")?;
        let q = std::str::from_utf8(q).map_err(|_| "queue name")?;
        if crate::flow::check_queue_name(q).is_err() {
            return Err("queue name");
        }
        hot.queue = q.to_owned();
        end + 1 + len
    } else {
        end
    };
    Ok((hot, generation, &rec[end..]))
}

fn split_text(
    status: JobStatus,
    rec: &[u8],
) -> std::result::Result<(Hot, &[u8], &[u8]), &'static str> {
    let bar = rec.iter().position(|&b| b == b'|').ok_or("no state separator")?;
    let (head, rest) = (&rec[..bar], &rec[bar + 1..]);
    if head.len() < 2 {
        return Err("state too short");
    }
    let priority = JobPriority::from_index(usize::from(head[1].wrapping_sub(b'0')))
        .ok_or("unknown priority")?;
    let text = std::str::from_utf8(&head[2..]).map_err(|_| "state is not text")?;
    let mut f = text.split(':').skip(1);
    let mut next = |what: &'static str| -> std::result::Result<i64, &'static str> {
        f.next().and_then(|s| s.parse::<i64>().ok()).ok_or(what)
    };
    let attempt = next("attempt")?;
    let retry_count = next("retry count")?;
    let max_retries = next("max retries")?;
    let timeout_ms = next("timeout")?;
    // The scripts read only 0 and 1 (lib.lua's `parse` refuses anything else).
    if !(0..=1).contains(&next("cancel flag")?) {
        return Err("cancel flag is not 0 or 1");
    }
    let _stalls = next("stall count")?;
    let created = next("created")?;
    let scheduled = next("scheduled")?;
    let started = next("started")?;
    let finished = next("finished")?;
    // An optional generation (lib.lua: only for a job whose id still has ghosts), then the end.
    let generation = match f.next() {
        Some(g) if g.is_empty() || !g.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            return Err("generation");
        }
        Some(g) => g.as_bytes(),
        None => b"",
    };
    if f.next().is_some() {
        return Err("too many state fields");
    }
    let to_u32 = |v: i64| u32::try_from(v).map_err(|_| "counter out of range");
    let hot = Hot {
        status,
        priority,
        attempt: to_u32(attempt)?,
        retry_count: to_u32(retry_count)?,
        max_retries: to_u32(max_retries)?,
        timeout_ms: u64::try_from(timeout_ms).map_err(|_| "negative timeout")?,
        created,
        scheduled,
        started,
        finished,
        queue: String::new(),
    };
    Ok((hot, generation, rest))
}

/// The generation in a record's hot state (empty if it has none, or if the record cannot be
/// read; see `lib.lua`): a pending list entry `<id>/<generation>` belongs to the record
/// only if the two are equal.
pub(crate) fn generation(rec: &[u8]) -> &[u8] {
    split_hot(rec).map_or(&[][..], |(_, g, _)| g)
}

/// Splits a pending list entry into the id and the generation (empty if none).
pub(crate) fn split_entry(entry: &str) -> (&str, &str) {
    entry.split_once('/').unwrap_or((entry, ""))
}

/// Builds a [`Job`] from a record and the optional result and error.
pub(crate) fn to_job(
    id: JobId,
    rec: &[u8],
    result: Option<&[u8]>,
    error: Option<String>,
) -> Result<Job> {
    let sid = id.to_string();
    let (hot, meta, payload) = parse(&sid, rec)?;
    let json = |b: Option<&[u8]>, what: &str| -> Result<Option<serde_json::Value>> {
        match b {
            None => Ok(None),
            Some(b) => serde_json::from_slice(b).map(Some).map_err(|e| Error::CorruptRecord {
                id: sid.clone(),
                reason: format!("{what} is not valid JSON: {e}"),
            }),
        }
    };
    Ok(Job {
        id,
        name: meta.n.into_owned(),
        args: json(payload, "payload")?.unwrap_or(serde_json::Value::Null),
        status: hot.status,
        priority: hot.priority,
        created_at: ms_to_time(hot.created).unwrap_or_default(),
        scheduled_at: ms_to_time(hot.scheduled),
        started_at: ms_to_time(hot.started),
        completed_at: ms_to_time(hot.finished),
        error,
        result: json(result, "result")?,
        retry_count: hot.retry_count,
        max_retries: hot.max_retries,
        timeout: Duration::from_millis(hot.timeout_ms),
        user_id: meta.u.map(|u| u.into_owned()),
        attempt: hot.attempt,
        progress: None,
        trace: meta.t,
        queue: if hot.queue.is_empty() { crate::flow::DEFAULT_QUEUE.to_owned() } else { hot.queue },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_a_record_written_by_the_scripts() -> Result<()> {
        let rec = b"r1:2:1:3:30000:0:0:1700000000123:0:1700000000200:0|{\"n\":\"sync\",\"u\":\"u-1\"}\n{\"a\":1}";
        let id = JobId::new();
        let job = to_job(id, rec, None, Some("boom".into()))?;
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.priority, JobPriority::High);
        assert_eq!((job.attempt, job.retry_count, job.max_retries), (2, 1, 3));
        assert_eq!(job.timeout, Duration::from_secs(30));
        assert_eq!(job.name, "sync");
        assert_eq!(job.user_id.as_deref(), Some("u-1"));
        assert_eq!(job.args, serde_json::json!({"a": 1}));
        assert_eq!(job.created_at.timestamp_millis(), 1_700_000_000_123);
        assert!(job.scheduled_at.is_none());
        assert_eq!(job.error.as_deref(), Some("boom"));
        Ok(())
    }

    #[test]
    fn a_generation_is_read_after_the_timestamps() -> Result<()> {
        let plain = b"p2:0:0:3:30000:0:0:1700000000123:0:0:0|{\"n\":\"x\"}\n{}";
        let stamped = b"p2:0:0:3:30000:0:0:1700000000123:0:0:0:42|{\"n\":\"x\"}\n{}";
        assert_eq!(generation(plain), b"");
        assert_eq!(generation(stamped), b"42");
        let (a, b) =
            (to_job(JobId::new(), plain, None, None)?, to_job(JobId::new(), stamped, None, None)?);
        assert_eq!((a.status, a.priority, a.max_retries), (b.status, b.priority, b.max_retries));
        assert_eq!(split_entry("abc/42"), ("abc", "42"));
        assert_eq!(split_entry("abc"), ("abc", ""));
        Ok(())
    }

    #[test]
    fn a_jobs_own_backoff_is_the_first_key_of_its_meta_and_only_when_set() -> Result<()> {
        let plain = NewJob { user_id: Some("u-1".into()), ..NewJob::new("sync", json!({})) };
        // Byte for byte the meta of a job without a backoff: no record grows.
        assert_eq!(serde_json::to_string(&MetaOut::of(&plain))?, r#"{"n":"sync","u":"u-1"}"#);
        let both = NewJob {
            retry_base: Some(Duration::from_secs(10)),
            retry_cap: Some(Duration::from_millis(1500)),
            ..plain.clone()
        };
        let meta = serde_json::to_string(&MetaOut::of(&both))?;
        assert_eq!(meta, r#"{"r":[10000,1500],"n":"sync","u":"u-1"}"#);
        let base = NewJob { retry_base: Some(Duration::from_secs(1)), ..plain };
        let meta = serde_json::to_string(&MetaOut::of(&base))?;
        assert_eq!(meta, r#"{"r":[1000,null],"n":"sync","u":"u-1"}"#);
        // A trace context goes after the other keys: the backoff stays first.
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let trace = TraceContext { traceparent: tp.into(), tracestate: None, baggage: None };
        let traced = NewJob { trace: Some(trace.clone()), ..both.clone() };
        let meta_t = serde_json::to_string(&MetaOut::of(&traced))?;
        assert_eq!(
            meta_t,
            format!(r#"{{"r":[10000,1500],"n":"sync","u":"u-1","t":{{"traceparent":"{tp}"}}}}"#)
        );
        let rec = format!("p2:0:0:3:30000:0:0:1:0:0:0|{meta_t}\n{{}}");
        assert_eq!(to_job(JobId::new(), rec.as_bytes(), None, None)?.trace, Some(trace));
        // And the reader still reads it.
        let rec = format!("p2:0:0:3:30000:0:0:1:0:0:0|{meta}\n{{}}");
        let job = to_job(JobId::new(), rec.as_bytes(), None, None)?;
        assert_eq!((job.name.as_str(), job.user_id.as_deref()), ("sync", Some("u-1")));
        Ok(())
    }

    /// A record in the binary form lib.lua's `fmt` writes (`HOT`: big-endian); `n` is
    /// att, rc, mr, to, cx, stl, ca, sa, st, fa.
    pub(super) fn binary(s: u8, p: u8, n: [u64; 10], g: &[u8], rest: &[u8]) -> Vec<u8> {
        let flags = p + 4 * u8::try_from(n[4]).expect("cx") + if g.is_empty() { 0 } else { 8 };
        let mut out = vec![s, flags];
        for (i, w) in [(0, 4), (1, 2), (2, 2), (3, 4), (5, 2), (6, 6), (7, 6), (8, 6), (9, 6)] {
            out.extend_from_slice(&n[i].to_be_bytes()[8 - w..]);
        }
        if !g.is_empty() {
            out.push(u8::try_from(g.len()).expect("short generation"));
            out.extend_from_slice(g);
        }
        out.extend_from_slice(rest);
        out
    }

    #[test]
    fn reads_the_binary_form_the_scripts_write() -> Result<()> {
        let n = [2, 1, 3, 30_000, 0, 0, 1_700_000_000_123, 0, 1_700_000_000_200, 0];
        let rest = b"{\"n\":\"sync\",\"u\":\"u-1\"}\n{\"a\":1}";
        let rec = binary(b'r', 1, n, b"", rest);
        assert_eq!(rec.len(), HOT_LEN + rest.len());
        let job = to_job(JobId::new(), &rec, None, None)?;
        assert_eq!((job.status, job.priority), (JobStatus::Running, JobPriority::High));
        assert_eq!((job.attempt, job.retry_count, job.max_retries), (2, 1, 3));
        assert_eq!(job.timeout, Duration::from_secs(30));
        assert_eq!((job.name.as_str(), job.user_id.as_deref()), ("sync", Some("u-1")));
        assert_eq!(job.args, serde_json::json!({"a": 1}));
        assert_eq!(job.created_at.timestamp_millis(), 1_700_000_000_123);
        assert!(job.scheduled_at.is_none());
        assert_eq!(job.started_at.map(|t| t.timestamp_millis()), Some(1_700_000_000_200));
        let stamped = binary(b'p', 0, n, b"42", b"{\"n\":\"x\"}\n{}");
        assert_eq!((generation(&rec), generation(&stamped)), (&b""[..], &b"42"[..]));
        assert_eq!(to_job(JobId::new(), &stamped, None, None)?.name, "x");
        Ok(())
    }

    #[test]
    fn a_bad_binary_state_is_a_clear_error() {
        let n = [0, 0, 3, 30_000, 0, 0, 1, 0, 0, 0];
        let ok = binary(b'p', 0, n, b"", b"{\"n\":\"x\"}");
        assert!(to_job(JobId::new(), &ok, None, None).is_ok());
        let mut flags = ok.clone();
        flags[1] = 32;
        let mut cases = vec![
            flags,
            binary(b'q', 0, n, b"", b"{\"n\":\"x\"}"),
            binary(b'p', 0, n, b"4-2", b"{\"n\":\"x\"}"),
            ok[..HOT_LEN - 1].to_vec(),
        ];
        // A generation flagged, longer than what follows it, or empty.
        let stamped = binary(b'p', 0, n, b"42", b"");
        let mut long = stamped.clone();
        long[HOT_LEN] = 200;
        cases.push(long);
        let mut empty = stamped.clone();
        empty[HOT_LEN] = 0;
        cases.push(empty);
        cases.push(stamped[..HOT_LEN].to_vec());
        for rec in cases {
            let r = to_job(JobId::new(), &rec, None, None);
            assert!(matches!(r, Err(Error::CorruptRecord { .. })), "{rec:?} -> {r:?}");
        }
    }

    #[test]
    fn garbage_is_a_clear_error_never_a_panic() {
        for rec in [
            &b""[..],
            b"|",
            b"z1:0|{}",
            b"p9:0:0:0:0:0:0:0:0:0:0|{\"n\":\"x\"}",
            b"p1:0:0:0|{\"n\":\"x\"}",
            b"p1:0:0:0:0:0:0:0:0:0:0|not json",
            b"p1:0:0:0:0:0:0:0:0:0:0|{\"n\":\"x\"}\nnot json",
            b"p1:-1:0:0:0:0:0:0:0:0:0|{\"n\":\"x\"}",
            b"p1:\xff:0:0:0:0:0:0:0:0:0|{\"n\":\"x\"}",
            b"p1:0:0:0:0:2:0:0:0:0:0|{\"n\":\"x\"}",
            b"p1:0:0:0:0:0:0:0:0:0:0:|{\"n\":\"x\"}",
            b"p1:0:0:0:0:0:0:0:0:0:0:4-2|{\"n\":\"x\"}",
            b"p1:0:0:0:0:0:0:0:0:0:0:4:2|{\"n\":\"x\"}",
        ] {
            let r = to_job(JobId::new(), rec, None, None);
            assert!(matches!(r, Err(Error::CorruptRecord { .. })), "{rec:?} -> {r:?}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const VALID: &[u8] =
        b"r1:2:1:3:30000:0:0:1700000000123:0:1700000000200:0|{\"n\":\"sync\"}\n{\"a\":1}";

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any bytes at all: a job or a clear error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(rec in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = to_job(JobId::new(), &rec, Some(&rec), Some("e".into()));
        }

        /// The same for the binary form.
        #[test]
        fn mutated_binary_records_never_panic(
            edits in proptest::collection::vec((0..60usize, any::<u8>()), 0..6),
            cut in 0..=60usize,
        ) {
            let n = [2, 1, 3, 30_000, 0, 0, 1_700_000_000_123, 0, 1_700_000_000_200, 0];
            let mut rec = super::tests::binary(b'r', 1, n, b"7", b"{\"n\":\"s\"}\n{}");
            for (i, b) in edits {
                if let Some(x) = rec.get_mut(i) {
                    *x = b;
                }
            }
            rec.truncate(cut);
            if let Err(e) = to_job(JobId::new(), &rec, None, None) {
                prop_assert!(matches!(e, Error::CorruptRecord { .. }), "{e:?}");
            }
        }

        /// A valid record with a few bytes changed, cut, or grown: the realistic corruptions.
        #[test]
        fn mutated_records_never_panic(
            edits in proptest::collection::vec((0..VALID.len(), any::<u8>()), 0..6),
            cut in 0..=VALID.len(),
        ) {
            let mut rec = VALID.to_vec();
            for (i, b) in edits {
                rec[i] = b;
            }
            rec.truncate(cut);
            match to_job(JobId::new(), &rec, None, None) {
                Ok(job) => prop_assert!(!job.name.is_empty() || rec.contains(&b'|')),
                Err(e) => prop_assert!(matches!(e, Error::CorruptRecord { .. }), "{e:?}"),
            }
        }
    }
}
