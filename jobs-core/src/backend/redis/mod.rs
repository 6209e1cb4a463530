//! The Redis backend (placeholder while it is being written).
#![allow(missing_docs, unused)]

use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::error::{Error, Result};
use crate::job::{EnqueueOutcome, Job, JobId, JobPriority, NewJob};
use crate::stats::QueueStats;

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    pub namespace: String,
    pub prefix: String,
    pub backend: BackendConfig,
}

impl RedisConfig {
    pub fn new(url: &str) -> Self {
        RedisConfig { url: url.into(), namespace: "jobs".into(), prefix: "jobq".into(), backend: BackendConfig::default() }
    }
}

pub struct RedisBackend;

impl RedisBackend {
    pub async fn connect(_cfg: RedisConfig) -> Result<Self> {
        Err(Error::Backend("not yet".into()))
    }
}

fn nyi<T>() -> Result<T> {
    Err(Error::Backend("not yet".into()))
}

#[async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> &'static str { "redis" }
    async fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<EnqueueOutcome>> { nyi() }
    async fn fetch(&self, req: &FetchRequest) -> Result<Fetched> { nyi() }
    async fn wait_for_work(&self, max: Duration) -> Result<()> { nyi() }
    async fn heartbeat(&self, beat: &Heartbeat) -> Result<HeartbeatReply> { nyi() }
    async fn complete(&self, items: &[Completion]) -> Result<Vec<AckOutcome>> { nyi() }
    async fn fail(&self, failure: &Failure) -> Result<FailOutcome> { nyi() }
    async fn release(&self, leases: &[Lease]) -> Result<u64> { nyi() }
    async fn reap(&self, opts: &ReapOptions) -> Result<ReapReport> { nyi() }
    async fn cancel(&self, id: JobId) -> Result<CancelOutcome> { nyi() }
    async fn get_job(&self, id: JobId) -> Result<Option<Job>> { nyi() }
    async fn list_pending(&self, priority: Option<JobPriority>, limit: usize) -> Result<Vec<Job>> { nyi() }
    async fn list_dead(&self, offset: usize, limit: usize) -> Result<Vec<Job>> { nyi() }
    async fn retry_dead(&self, id: JobId) -> Result<()> { nyi() }
    async fn clear_dead(&self) -> Result<u64> { nyi() }
    async fn stats(&self) -> Result<QueueStats> { nyi() }
    async fn purge(&self, limit: usize) -> Result<u64> { nyi() }
    async fn list_workers(&self, ttl: Duration) -> Result<Vec<WorkerEntry>> { nyi() }
}
