//! Property tests: arbitrary attribute arguments never make a macro panic; they expand to
//! code or to a compile error.

use std::str::FromStr;

use proc_macro2::TokenStream;
use proptest::prelude::*;

use crate::attrs::Kind;
use crate::expand::expand;

const KINDS: [Kind; 5] =
    [Kind::JobHandler, Kind::EveryMinutes, Kind::EverySeconds, Kind::DailyAt, Kind::Cron];

/// Token-ish fragments that attribute arguments are made of, valid and not.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"sync\"".to_owned()),
        Just("\"0 8 * * *\"".to_owned()),
        Just("\"61 * * * *\"".to_owned()),
        Just("name".to_owned()),
        Just("priority".to_owned()),
        Just("timeout".to_owned()),
        Just("max_retries".to_owned()),
        Just("args".to_owned()),
        Just("=".to_owned()),
        Just(",".to_owned()),
        Just("\"high\"".to_owned()),
        Just("\"30s\"".to_owned()),
        Just("\"-1ms\"".to_owned()),
        Just("{ \"a\": 1 }".to_owned()),
        Just("[1, 2]".to_owned()),
        Just("queue".to_owned()),
        Just("unique(by = [a], for = \"10m\")".to_owned()),
        Just("unique(for = 0, until = \"x\", ttl = 1)".to_owned()),
        Just("rate_limit(max = 0, per = \"1q\", by = [])".to_owned()),
        Just("concurrency(max = 4294967296, by = [a, a])".to_owned()),
        Just("concurrency(by = [for])".to_owned()),
        Just("unique()".to_owned()),
        (0u64..100_000).prop_map(|n| n.to_string()),
        Just("-5".to_owned()),
        Just("18446744073709551616".to_owned()),
        "[a-z_]{1,8}".prop_map(|s| s),
        "\"[ -~]{0,12}\"".prop_map(|s| s.replace('\\', "")),
    ]
}

fn item() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("async fn f() -> Result<(), JobError> { Ok(()) }"),
        Just("async fn f(args: Args) -> Result<u32, JobError> { Ok(1) }"),
        Just("async fn f(args: Args, ctx: JobContext) -> Result<(), JobError> { Ok(()) }"),
        Just("fn f() {}"),
        Just("async fn f<T>(t: T) {}"),
        Just("struct S;"),
        Just("async fn f(a: u8, b: u8, c: u8) {}"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_arguments_never_panic(
        kind in 0..KINDS.len(),
        parts in proptest::collection::vec(fragment(), 0..8),
        item in item(),
    ) {
        // Only inputs the Rust lexer accepts can reach a macro.
        if let (Ok(attr), Ok(item)) = (TokenStream::from_str(&parts.join(" ")), TokenStream::from_str(item)) {
            let out = expand(KINDS[kind], attr, item).to_string();
            prop_assert!(!out.is_empty());
        }
    }
}
