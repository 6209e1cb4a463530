//! Typed enqueue: enqueue a handler through the type `#[job_handler]` generates for it, so
//! that the wrong argument type does not compile.

use crate::error::Result;
use crate::handler::JobDefinition;
use crate::job::NewJob;
use crate::queue::{Enqueue, JobQueue};

impl JobQueue {
    /// Starts an enqueue of the handler `J` with its typed arguments. The handler's own
    /// options (`priority`, `max_retries`, `timeout` on its attribute) are applied first;
    /// options set on the returned builder override them.
    ///
    /// ```rust,standalone_crate
    /// use jobs_core::prelude::*;
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct SyncPortfolio { user_id: String }
    ///
    /// #[job_handler("sync_portfolio", priority = "high", max_retries = 5)]
    /// async fn sync_portfolio(args: SyncPortfolio) -> Result<(), JobError> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> jobs_core::Result<()> {
    /// let queue = JobQueue::memory();
    /// let id = queue
    ///     .enqueue_typed::<SyncPortfolioJob>(SyncPortfolio { user_id: "user-123".into() })
    ///     .priority(JobPriority::Critical)
    ///     .await?;
    /// let job = queue.get_job(id).await?.expect("just enqueued");
    /// assert_eq!(job.name, "sync_portfolio");
    /// assert_eq!(job.priority, JobPriority::Critical); // the enqueue option wins
    /// assert_eq!(job.max_retries, 5); // the handler's option
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Passing anything but the handler's argument type does not compile:
    ///
    /// ```compile_fail,standalone_crate
    /// # use jobs_core::prelude::*;
    /// # #[derive(Serialize, Deserialize)]
    /// # struct SyncPortfolio { user_id: String }
    /// # #[job_handler("sync_portfolio")]
    /// # async fn sync_portfolio(args: SyncPortfolio) -> Result<(), JobError> { Ok(()) }
    /// # async fn f(queue: JobQueue) {
    /// queue.enqueue_typed::<SyncPortfolioJob>(serde_json::json!({"user_id": "u"})).await;
    /// # }
    /// ```
    pub fn enqueue_typed<J: JobDefinition>(&self, args: J::Args) -> Enqueue<'_> {
        self.enqueue_with(J::NAME.to_owned(), args, J::DEFAULTS)
    }

    /// A typed job with the handler's and this queue's defaults applied, for
    /// [`enqueue_many`](Self::enqueue_many). Fails only if the arguments cannot be
    /// serialised.
    pub fn new_typed_job<J: JobDefinition>(&self, args: J::Args) -> Result<NewJob> {
        Ok(self.job_with(J::NAME.to_owned(), serde_json::to_value(args)?, J::DEFAULTS))
    }
}
