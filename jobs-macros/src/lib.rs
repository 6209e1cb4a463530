//! Attribute macros for `jobs-core`. Use them through `jobs_core`, which re-exports them.
