//! Compile-time behaviour of the macros: every accepted form compiles, every mistake is a
//! compile error at the offending tokens. Regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p jobs-macros --test ui` (stable toolchain) and review them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/*/pass/*.rs");
    t.compile_fail("tests/ui/*/fail/*.rs");
}
