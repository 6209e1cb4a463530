//! `jobs-runner`: workers for the predefined trading tasks, plus operator commands.
//! See `jobs-runner --help`.

// inventory only sees crates that are linked: naming the task crate links its handlers.
use jobs_tasks as _;

fn main() -> std::process::ExitCode {
    jobs_core::runner::main()
}
