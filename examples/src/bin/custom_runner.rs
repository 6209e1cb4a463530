//! A runner for your own handlers: link the crate that defines them, then hand over to
//! `jobs_core::runner`. Same flags and environment as `jobs-runner`.
//!
//! ```text
//! cargo run -p examples --bin custom_runner                 # in memory
//! cargo run -p examples --bin custom_runner -- handlers     # lists send_welcome_email, …
//! ```

// Without this line the handlers of `examples::my_tasks` would not be registered:
// inventory only sees crates that the binary links.
use examples as _;

fn main() -> std::process::ExitCode {
    jobs_core::runner::main()
}
