use jobs_core::prelude::*;

#[derive(Serialize, Deserialize)]
struct Args {
    user_id: String,
}

#[derive(Serialize)]
struct Report {
    ok: bool,
}

#[derive(Debug)]
struct MyError;

impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my error")
    }
}

impl std::error::Error for MyError {}

#[job_handler("with_args_and_ctx")]
async fn with_args_and_ctx(args: Args, ctx: JobContext) -> Result<Report, JobError> {
    let _ = (args.user_id, ctx.job_id());
    Ok(Report { ok: true })
}

#[job_handler("with_args")]
async fn with_args(Args { user_id }: Args) -> Result<String, MyError> {
    Ok(user_id)
}

#[job_handler("with_ctx")]
async fn with_ctx(ctx: jobs_core::JobContext) -> std::result::Result<(), std::io::Error> {
    let _ = ctx;
    Ok(())
}

#[job_handler]
async fn no_params() {}

pub mod public {
    use jobs_core::prelude::*;

    /// A public handler gets a public typed handle.
    #[job_handler("public_handler")]
    pub async fn public_handler(n: u64) -> Result<u64, JobError> {
        Ok(n + 1)
    }
}

fn main() {
    // The functions stay callable as written.
    let _ = with_args(Args { user_id: "u".into() });
    let _ = no_params();
    assert_eq!(<WithArgsAndCtxJob as JobDefinition>::NAME, "with_args_and_ctx");
    assert_eq!(<NoParamsJob as JobDefinition>::NAME, "no_params");
    assert_eq!(<public::PublicHandlerJob as JobDefinition>::NAME, "public_handler");
    let _: <WithArgsJob as JobDefinition>::Args = Args { user_id: String::new() };
    let _: <WithCtxJob as JobDefinition>::Args = ();
}
