//! Which named queues a worker serves, and in what order ([`QueueSelection`]).
//!
//! Strict (`payments,default`): every fetch serves the queues in the order given, so a
//! queue's jobs wait while an earlier queue has any. Weighted (`payments:3,default:1`):
//! each fetch puts one queue first, chosen by smooth weighted round robin (nginx's: over
//! every `sum of weights` fetches each queue comes first `weight` times, spread evenly),
//! and the others after it in the order given, so that no queue starves while another has
//! work and an idle first choice costs no extra call.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::flow::{DEFAULT_QUEUE, check_queue_name};

/// The largest weight of a queue in a weighted selection.
pub const MAX_QUEUE_WEIGHT: u32 = 1_000;

/// The queues a worker serves, strict or weighted. Parsed from `JOBS_QUEUES` /
/// `--queues` (`"payments,default"` or `"payments:3,default:1"`).
///
/// ```
/// use jobs_core::QueueSelection;
///
/// let strict: QueueSelection = "payments,default".parse()?;
/// assert_eq!(strict.names(), ["payments", "default"]);
/// assert!(!strict.is_weighted());
/// let weighted: QueueSelection = "payments:3,default".parse()?;
/// assert_eq!(weighted.weights(), [("payments", 3), ("default", 1)]);
/// assert!("pay ments".parse::<QueueSelection>().is_err());
/// # Ok::<(), jobs_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSelection {
    queues: Vec<(String, u32)>,
    weighted: bool,
}

impl QueueSelection {
    /// Serves `names` in strict order. Every name is checked
    /// ([`check_queue_name`](crate::flow::check_queue_name)); repeats are dropped; at
    /// least one is needed.
    pub fn strict<I, S>(names: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::build(names.into_iter().map(|n| (n.into(), 1)), false)
    }

    /// Serves each queue first in proportion to its weight (1 to [`MAX_QUEUE_WEIGHT`]).
    pub fn weighted<I, S>(queues: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
    {
        Self::build(queues.into_iter().map(|(n, w)| (n.into(), w)), true)
    }

    /// The default queue alone: what a worker whose handlers name no queue serves.
    pub fn default_queue() -> Self {
        QueueSelection { queues: vec![(DEFAULT_QUEUE.to_owned(), 1)], weighted: false }
    }

    fn build(queues: impl Iterator<Item = (String, u32)>, weighted: bool) -> Result<Self, Error> {
        let mut out: Vec<(String, u32)> = Vec::new();
        for (name, w) in queues {
            check_queue_name(&name)?;
            if !(1..=MAX_QUEUE_WEIGHT).contains(&w) {
                return Err(Error::Config(format!(
                    "queue `{name}`: weight must be 1 to {MAX_QUEUE_WEIGHT}, found {w}"
                )));
            }
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, w));
            }
        }
        if out.is_empty() {
            return Err(Error::Config("a worker must serve at least one queue".into()));
        }
        Ok(QueueSelection { queues: out, weighted })
    }

    /// The queues, in the order given.
    pub fn names(&self) -> Vec<&str> {
        self.queues.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The queues with their weights (1 each when strict).
    pub fn weights(&self) -> Vec<(&str, u32)> {
        self.queues.iter().map(|(n, w)| (n.as_str(), *w)).collect()
    }

    /// Whether it is weighted (else strict).
    pub fn is_weighted(&self) -> bool {
        self.weighted
    }

    /// Whether it serves `queue`.
    pub fn serves(&self, queue: &str) -> bool {
        self.queues.iter().any(|(n, _)| n == queue)
    }
}

impl Default for QueueSelection {
    fn default() -> Self {
        Self::default_queue()
    }
}

impl FromStr for QueueSelection {
    type Err = Error;

    /// `a,b,c` (strict) or `a:3,b:1` (weighted: any weight given makes it weighted; a
    /// queue without one weighs 1). Spaces around names are ignored.
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut weighted = false;
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once(':') {
                Some((name, w)) => {
                    let w: u32 = w.trim().parse().map_err(|_| {
                        Error::Config(format!(
                            "queue `{}`: weight `{}` is not a whole number",
                            name.trim(),
                            w.trim()
                        ))
                    })?;
                    weighted = true;
                    out.push((name.trim().to_owned(), w));
                }
                None => out.push((part.to_owned(), 1)),
            }
        }
        Self::build(out.into_iter(), weighted)
    }
}

impl fmt::Display for QueueSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (n, w)) in self.queues.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if self.weighted {
                write!(f, "{n}:{w}")?;
            } else {
                f.write_str(n)?;
            }
        }
        Ok(())
    }
}

/// The order of the next fetch: for a weighted selection, smooth weighted round robin's
/// state (each queue's current weight).
#[derive(Debug, Clone)]
pub(crate) struct QueueTurns {
    current: Vec<i64>,
}

impl QueueTurns {
    pub(crate) fn new(sel: &QueueSelection) -> Self {
        QueueTurns { current: vec![0; sel.queues.len()] }
    }

    /// The queues of the next fetch, in the order it serves them.
    pub(crate) fn next(&mut self, sel: &QueueSelection) -> Vec<String> {
        let names = sel.queues.iter().map(|(n, _)| n.clone());
        if !sel.weighted || sel.queues.len() < 2 {
            return names.collect();
        }
        let total: i64 = sel.queues.iter().map(|(_, w)| i64::from(*w)).sum();
        let mut best = 0;
        for (i, (_, w)) in sel.queues.iter().enumerate() {
            self.current[i] += i64::from(*w);
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= total;
        let mut out = Vec::with_capacity(sel.queues.len());
        out.push(sel.queues[best].0.clone());
        out.extend(names.enumerate().filter(|(i, _)| *i != best).map(|(_, n)| n));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strict_and_weighted_lists_and_refuses_bad_ones() -> Result<(), Error> {
        let s: QueueSelection = " payments , default ".parse()?;
        assert_eq!((s.names(), s.is_weighted()), (vec!["payments", "default"], false));
        assert_eq!(s.to_string(), "payments,default");
        let w: QueueSelection = "payments:3,default:1".parse()?;
        assert_eq!(w.weights(), [("payments", 3), ("default", 1)]);
        assert_eq!(w.to_string(), "payments:3,default:1");
        // Repeats are dropped, the first kept.
        assert_eq!("a,b,a".parse::<QueueSelection>()?.names(), ["a", "b"]);
        for bad in ["", ",", "a b", "a:0", "a:x", "a:1001", "a:-1", &"q".repeat(65)] {
            let err = bad.parse::<QueueSelection>().expect_err(bad);
            assert!(matches!(err, Error::Config(_) | Error::InvalidQueue { .. }), "{bad}: {err}");
        }
        Ok(())
    }

    #[test]
    fn weighted_turns_put_each_queue_first_in_proportion_evenly() -> Result<(), Error> {
        let w: QueueSelection = "a:3,b:1".parse()?;
        let mut t = QueueTurns::new(&w);
        let firsts: Vec<String> = (0..8).map(|_| t.next(&w)[0].clone()).collect();
        assert_eq!(firsts, ["a", "a", "b", "a", "a", "a", "b", "a"]);
        // Every order lists every queue, the first chosen and the rest in the given order.
        let mut t = QueueTurns::new(&w);
        for _ in 0..8 {
            let o = t.next(&w);
            assert_eq!(o.len(), 2);
            assert!(o.contains(&"a".to_owned()) && o.contains(&"b".to_owned()));
        }
        // Strict: always the given order.
        let s: QueueSelection = "b,a".parse()?;
        let mut t = QueueTurns::new(&s);
        assert!((0..4).all(|_| t.next(&s) == ["b", "a"]));
        Ok(())
    }
}
