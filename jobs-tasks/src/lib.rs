//! Predefined trading-platform tasks for the jobs runtime.
