use jobs_core::prelude::*;

#[every_seconds(0)]
async fn spin() {}

fn main() {}
