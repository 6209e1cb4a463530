use jobs_core::prelude::*;

#[every_minutes(5, queue = "default")]
async fn tick() {}

fn main() {}
