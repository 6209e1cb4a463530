//! The in-memory backend (placeholder while it is being written).
#![allow(missing_docs, unused)]
use super::BackendConfig;
pub struct MemoryBackend;
impl MemoryBackend { pub fn new(_c: BackendConfig) -> Self { MemoryBackend } }
