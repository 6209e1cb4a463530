//! An application crate's handlers, as users write them: this library plays `my_tasks`.
//!
//! Handlers register at link time (through `inventory`), so a binary sees them only if it
//! links this crate. Binaries in this package do so with `use examples as _;` — see
//! `src/bin/custom_runner.rs` — and so must your runner with your own task crate.

pub mod my_tasks {
    //! Two handlers and a schedule.
    use jobs_core::prelude::*;

    /// Arguments of `send_welcome_email`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Welcome {
        /// Who to greet.
        pub user_id: String,
        /// Their address.
        pub email: String,
    }

    /// Sends a welcome email (here: returns what it would send).
    #[job_handler("send_welcome_email", max_retries = 5, timeout = "10s")]
    pub async fn send_welcome_email(
        args: Welcome,
        ctx: JobContext,
    ) -> Result<serde_json::Value, JobError> {
        if !args.email.contains('@') {
            // Retrying cannot fix a bad address: straight to the dead-letter queue.
            return Err(JobError::permanent_msg(format!("invalid email `{}`", args.email)));
        }
        Ok(
            serde_json::json!({ "to": args.email, "user_id": args.user_id, "attempt": ctx.attempt() }),
        )
    }

    /// A periodic job with no arguments.
    #[every_minutes(10, name = "refresh_exchange_rates")]
    pub async fn refresh_exchange_rates() -> Result<(), JobError> {
        Ok(())
    }
}

#[doc(hidden)]
pub mod bench_support;
