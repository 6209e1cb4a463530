//! The checks of a new job that a backend cannot make (names, sizes, bounds), run before
//! anything is written.

use std::time::Duration;

use super::*;

impl NewJob {
    /// Checks what a backend cannot: names and sizes. Called before anything is written.
    pub fn validate(&self) -> Result<(), Error> {
        if self.name.is_empty() || self.name.len() > 200 {
            return Err(Error::InvalidJob {
                reason: "job name must be 1 to 200 bytes long".into(),
            });
        }
        if self.name.chars().any(|c| c.is_control()) {
            return Err(Error::InvalidJob {
                reason: "job name must not contain control characters".into(),
            });
        }
        if self.timeout < MIN_TIMEOUT || self.timeout > MAX_TIMEOUT {
            return Err(Error::InvalidJob {
                reason: format!(
                    "timeout must be between 1 ms and {} s, found {:?}",
                    MAX_TIMEOUT.as_secs(),
                    self.timeout
                ),
            });
        }
        if self.max_retries > MAX_RETRIES {
            return Err(Error::InvalidJob {
                reason: format!(
                    "max_retries must be at most {MAX_RETRIES}, found {}",
                    self.max_retries
                ),
            });
        }
        if let RunAt::Delay(d) = self.run_at
            && d > MAX_DELAY
        {
            return Err(Error::InvalidJob {
                reason: format!("delay must be at most {} days", MAX_DELAY.as_secs() / 86_400),
            });
        }
        if let Some(u) = &self.user_id
            && u.len() > 200
        {
            return Err(Error::InvalidJob { reason: "user_id must be at most 200 bytes".into() });
        }
        for (what, d) in [("retry_base", self.retry_base), ("retry_cap", self.retry_cap)] {
            if let Some(d) = d
                && (d < Duration::from_millis(1) || d > MAX_RETRY_DELAY)
            {
                return Err(Error::InvalidJob {
                    reason: format!(
                        "{what} must be between 1 ms and {} days, found {d:?}",
                        MAX_RETRY_DELAY.as_secs() / 86_400
                    ),
                });
            }
        }
        if let Some(lock) = &self.unique {
            lock.validate()?;
        }
        if let Some(q) = &self.queue {
            check_queue_name(q)?;
        }
        if let Some(limits) = &self.limits {
            limits.validate()?;
        }
        if let Some(trace) = &self.trace {
            trace.validate()?;
        }
        if let (Some(base), Some(cap)) = (self.retry_base, self.retry_cap)
            && base > cap
        {
            return Err(Error::InvalidJob {
                reason: format!("retry_base ({base:?}) must not exceed retry_cap ({cap:?})"),
            });
        }
        Ok(())
    }
}
