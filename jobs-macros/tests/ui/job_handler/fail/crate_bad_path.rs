// `crate = "..."` is the path the generated code uses: a wrong one is reported.
#[jobs_core::job_handler("lost", crate = "not_a_crate")]
async fn lost() {}

#[jobs_core::job_handler("not_a_path", crate = "1 + 1")]
async fn not_a_path() {}

fn main() {}
