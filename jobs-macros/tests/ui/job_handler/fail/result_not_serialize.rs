use jobs_core::prelude::*;

struct Report {
    rows: usize,
}

#[job_handler("report")]
async fn report() -> Result<Report, JobError> {
    Ok(Report { rows: 0 })
}

fn main() {
    let _ = Report { rows: 1 }.rows;
}
