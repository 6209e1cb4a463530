//! The flow-control options of `#[job_handler]`: `queue = "..."`, `unique(...)`,
//! `rate_limit(...)` (repeatable) and `concurrency(...)`, parsed and checked here; the
//! fields named in `by` are checked against the argument type by rustc, through the code
//! `expand.rs` emits.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Ident, LitStr, Token};

use crate::attrs::{self, AttrArgs, Errors, Group, OptValue, Seen};

mod kw {
    syn::custom_keyword!(by);
    syn::custom_keyword!(until);
    syn::custom_keyword!(on_conflict);
    syn::custom_keyword!(max);
    syn::custom_keyword!(per);
}

/// The longest queue name (jobs-core's `MAX_QUEUE_NAME_LEN`).
const MAX_QUEUE_LEN: usize = 64;

/// The longest `for` and `per`, in milliseconds (365 days).
const MAX_WINDOW_MS: u64 = 365 * 24 * 3600 * 1000;

/// The `key(...)` groups `#[job_handler]` takes, and which of them may be repeated.
pub(crate) const LISTS: &[&str] = &["unique", "rate_limit", "concurrency"];
pub(crate) const REPEATABLE: &[&str] = &["rate_limit"];

/// A `by = [a, b]` list: the field names as the user wrote them (their spans carry
/// rustc's error when the argument type has no such field).
pub(crate) struct By {
    /// The `by` keyword, where "this handler takes no arguments" points.
    pub span: Span,
    pub fields: Vec<Ident>,
}

/// `until = "..."`, by variant name of `jobs_core::UniqueUntil`.
pub(crate) struct UniqueArgs {
    pub by: Option<By>,
    pub window_ms: u64,
    /// `Done` or `Started`.
    pub until: &'static str,
    /// `Keep` or `Replace`.
    pub on_conflict: &'static str,
}

pub(crate) struct RateArgs {
    pub max: u32,
    pub per_ms: u64,
    pub by: Option<By>,
}

pub(crate) struct ConcurrencyArgs {
    pub max: u32,
    pub by: Option<By>,
}

/// Everything flow-related on one `#[job_handler]`.
#[derive(Default)]
pub(crate) struct FlowArgs {
    pub queue: Option<LitStr>,
    pub unique: Option<UniqueArgs>,
    pub rate_limits: Vec<RateArgs>,
    pub concurrency: Option<ConcurrencyArgs>,
}

impl FlowArgs {
    /// The flow options of `args` (whose keys `check_options` has already checked).
    pub(crate) fn parse(args: &AttrArgs, errors: &mut Errors) -> Self {
        let mut out = FlowArgs::default();
        if let Some(opt) = args.option("queue")
            && let Some(lit) = attrs::expect_str(opt, errors)
        {
            check_queue(lit, errors);
            out.queue = Some(lit.clone());
        }
        for group in &args.groups {
            match group.key.to_string().as_str() {
                "unique" if out.unique.is_none() => out.unique = parse_unique(group, errors),
                "rate_limit" => out.rate_limits.extend(parse_rate(group, errors)),
                "concurrency" if out.concurrency.is_none() => {
                    out.concurrency = parse_concurrency(group, errors)
                }
                // Unknown and repeated groups were reported by `check_options`.
                _ => {}
            }
        }
        out
    }

    /// Every `by` list given, for the checks against the argument type.
    pub(crate) fn by_lists(&self) -> impl Iterator<Item = &By> {
        let unique = self.unique.as_ref().and_then(|u| u.by.as_ref());
        let rates = self.rate_limits.iter().filter_map(|r| r.by.as_ref());
        let conc = self.concurrency.as_ref().and_then(|c| c.by.as_ref());
        unique.into_iter().chain(rates).chain(conc)
    }
}

/// The rule jobs-core's `check_queue_name` applies at run time.
fn check_queue(lit: &LitStr, errors: &mut Errors) {
    let v = lit.value();
    if v.is_empty() || v.len() > MAX_QUEUE_LEN {
        errors.spanned(lit, format!("queue name must be 1 to {MAX_QUEUE_LEN} bytes long"));
    } else if !v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        errors.spanned(
            lit,
            format!(
                "invalid queue name `{v}`: only ASCII letters, digits, `_`, `.` and `-` are allowed"
            ),
        );
    }
}

/// The keys a group may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    By,
    For,
    Until,
    OnConflict,
    Max,
    Per,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::By => "by",
            Key::For => "for",
            Key::Until => "until",
            Key::OnConflict => "on_conflict",
            Key::Max => "max",
            Key::Per => "per",
        }
    }
}

enum Value {
    By(By),
    Other(OptValue),
}

/// One `key = value` inside a group.
struct Entry {
    key: Key,
    ident: Ident,
    value: Value,
}

/// The entries of `group`, each key one of `keys`. Every mistake is reported; the entries
/// that parsed are returned, each key once.
fn entries(group: &Group, keys: &[Key], errors: &mut Errors) -> Vec<Entry> {
    let what = group.key.to_string();
    let parser = |input: ParseStream<'_>| {
        let mut out = Vec::new();
        let mut seen = Seen::default();
        let mut local = Errors::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            let key = keys.iter().copied().find(|k| match k {
                Key::By => lookahead.peek(kw::by),
                Key::For => lookahead.peek(Token![for]),
                Key::Until => lookahead.peek(kw::until),
                Key::OnConflict => lookahead.peek(kw::on_conflict),
                Key::Max => lookahead.peek(kw::max),
                Key::Per => lookahead.peek(kw::per),
            });
            let Some(key) = key else {
                let Ok(unknown) = input.call(Ident::parse_any) else {
                    return Err(lookahead.error());
                };
                let names: Vec<&str> = keys.iter().map(|k| k.name()).collect();
                local.spanned(
                    &unknown,
                    format!(
                        "unknown key `{unknown}` in `{what}(...)`; expected {}",
                        attrs::one_of(&names)
                    ),
                );
                skip_entry(input)?;
                continue;
            };
            let ident: Ident = input.call(Ident::parse_any)?;
            input.parse::<Token![=]>()?;
            let value = if key == Key::By {
                let content;
                let brackets = syn::bracketed!(content in input);
                let fields = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
                let fields: Vec<Ident> = fields.into_iter().collect();
                if fields.is_empty() {
                    let hint = if what == "unique" {
                        "leave `by` out to key on the whole arguments"
                    } else {
                        "leave `by` out for one limit across the handler"
                    };
                    local.push(syn::Error::new(
                        brackets.span.join(),
                        format!("`by` lists no fields; {hint}"),
                    ));
                }
                let mut names = Seen::default();
                for f in &fields {
                    names.first(f, &mut local);
                }
                Value::By(By { span: ident.span(), fields })
            } else {
                Value::Other(OptValue::parse(input)?)
            };
            if seen.first(&ident, &mut local) {
                out.push(Entry { key, ident, value });
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok((out, local))
    };
    match parser.parse2(group.tokens.clone()) {
        Ok((out, local)) => {
            if let Err(e) = local.finish() {
                errors.push(e);
            }
            out
        }
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    }
}

/// Skips the tokens of one entry, up to and including its comma.
fn skip_entry(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<proc_macro2::TokenTree>()?;
    }
    if !input.is_empty() {
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

/// The entry for `key`, its value as a plain option value.
fn value(entries: &[Entry], key: Key) -> Option<(&Ident, &OptValue)> {
    entries.iter().find(|e| e.key == key).and_then(|e| match &e.value {
        Value::Other(v) => Some((&e.ident, v)),
        Value::By(_) => None,
    })
}

fn take_by(entries: &mut Vec<Entry>) -> Option<By> {
    let i = entries.iter().position(|e| e.key == Key::By)?;
    match entries.remove(i).value {
        Value::By(by) => Some(by),
        Value::Other(_) => None,
    }
}

fn required<'a>(
    entries: &'a [Entry],
    key: Key,
    group: &Group,
    example: &str,
    errors: &mut Errors,
) -> Option<&'a OptValue> {
    let found = value(entries, key).map(|(_, v)| v);
    if found.is_none() {
        errors.spanned(
            &group.key,
            format!("`{}(...)` needs `{}`, e.g. `{example}`", group.key, key.name()),
        );
    }
    found
}

/// `max = N`, at least 1.
fn parse_max(v: &OptValue, errors: &mut Errors) -> Option<u32> {
    match v {
        OptValue::Int(i) => match i.base10_parse::<u32>() {
            Ok(0) => {
                errors.spanned(i, "`max` must be at least 1: a limit of 0 would never start a job");
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        other => {
            errors.push(syn::Error::new(other.span(), "`max` expects an integer"));
            None
        }
    }
}

/// A string value among `choices` (name as written, variant), or an error at it.
fn choice(
    key: Key,
    v: &OptValue,
    choices: &[(&str, &'static str)],
    errors: &mut Errors,
) -> Option<&'static str> {
    let names: Vec<&str> = choices.iter().map(|c| c.0).collect();
    let expected = attrs::one_of(&names);
    let OptValue::Str(lit) = v else {
        errors.push(syn::Error::new(
            v.span(),
            format!("`{}` expects a string: {expected}", key.name()),
        ));
        return None;
    };
    let s = lit.value();
    let found = choices.iter().find(|c| c.0 == s).map(|c| c.1);
    if found.is_none() {
        errors.spanned(lit, format!("unknown `{}` value `{s}`; expected {expected}", key.name()));
    }
    found
}

fn parse_unique(group: &Group, errors: &mut Errors) -> Option<UniqueArgs> {
    let keys = [Key::By, Key::For, Key::Until, Key::OnConflict];
    let mut entries = entries(group, &keys, errors);
    let by = take_by(&mut entries);
    let example = "unique(by = [user_id], for = \"10m\")";
    let window = required(&entries, Key::For, group, example, errors)
        .and_then(|v| attrs::parse_duration("for", v, MAX_WINDOW_MS, "365 days", errors));
    let until = match value(&entries, Key::Until) {
        Some((_, v)) => choice(Key::Until, v, &[("done", "Done"), ("started", "Started")], errors),
        None => Some("Done"),
    };
    let on_conflict = match value(&entries, Key::OnConflict) {
        Some((_, v)) => {
            choice(Key::OnConflict, v, &[("keep", "Keep"), ("replace", "Replace")], errors)
        }
        None => Some("Keep"),
    };
    Some(UniqueArgs { by, window_ms: window?, until: until?, on_conflict: on_conflict? })
}

fn parse_rate(group: &Group, errors: &mut Errors) -> Option<RateArgs> {
    let mut entries = entries(group, &[Key::Max, Key::Per, Key::By], errors);
    let by = take_by(&mut entries);
    let example = "rate_limit(max = 10, per = \"1s\")";
    let max =
        required(&entries, Key::Max, group, example, errors).and_then(|v| parse_max(v, errors));
    let per = required(&entries, Key::Per, group, example, errors)
        .and_then(|v| attrs::parse_duration("per", v, MAX_WINDOW_MS, "365 days", errors));
    Some(RateArgs { max: max?, per_ms: per?, by })
}

fn parse_concurrency(group: &Group, errors: &mut Errors) -> Option<ConcurrencyArgs> {
    let mut entries = entries(group, &[Key::Max, Key::By], errors);
    let by = take_by(&mut entries);
    let example = "concurrency(max = 1, by = [account_id])";
    let max =
        required(&entries, Key::Max, group, example, errors).and_then(|v| parse_max(v, errors));
    Some(ConcurrencyArgs { max: max?, by })
}

/// `r#type` → `type`: the name serde gives the field.
pub(crate) fn field_name(f: &Ident) -> String {
    let s = f.to_string();
    s.strip_prefix("r#").unwrap_or(&s).to_owned()
}

/// Only for the unit tests: the flow options of `#[job_handler(<tokens>)]`.
#[cfg(test)]
fn parse_tokens(tokens: proc_macro2::TokenStream) -> Result<FlowArgs, String> {
    let args = AttrArgs::parse(tokens).map_err(|e| e.to_string())?;
    let mut errors = Errors::default();
    let out = FlowArgs::parse(&args, &mut errors);
    args.check_options("job_handler", &["queue"], LISTS, REPEATABLE, &mut errors);
    errors
        .finish()
        .map_err(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn every_form_parses() -> Result<(), String> {
        let f = parse_tokens(quote!(
            queue = "payments",
            unique(by = [user_id, r#type], for = "10m", until = "started", on_conflict = "replace"),
            rate_limit(max = 10, per = "1s", by = [exchange]),
            rate_limit(per = "1m", max = 500),
            concurrency(max = 1, by = [account_id])
        ))?;
        assert_eq!(f.queue.map(|q| q.value()).as_deref(), Some("payments"));
        let u = f.unique.ok_or("unique")?;
        let by: Vec<String> = u.by.iter().flat_map(|b| b.fields.iter().map(field_name)).collect();
        assert_eq!(by, ["user_id", "type"]);
        assert_eq!((u.window_ms, u.until, u.on_conflict), (600_000, "Started", "Replace"));
        let rates: Vec<(u32, u64, bool)> =
            f.rate_limits.iter().map(|r| (r.max, r.per_ms, r.by.is_some())).collect();
        assert_eq!(rates, [(10, 1000, true), (500, 60_000, false)]);
        let c = f.concurrency.ok_or("concurrency")?;
        assert_eq!(c.max, 1);
        Ok(())
    }

    #[test]
    fn defaults_of_unique() -> Result<(), String> {
        let u = parse_tokens(quote!(unique(for = "2h")))?.unique.ok_or("unique")?;
        assert!(u.by.is_none());
        assert_eq!((u.window_ms, u.until, u.on_conflict), (7_200_000, "Done", "Keep"));
        Ok(())
    }

    #[test]
    fn mistakes_are_all_reported() {
        let err = parse_tokens(quote!(
            queue = "a b",
            unique(by = [a, a], for = "10x", until = "never", colour = "red"),
            rate_limit(max = 0, per = "1s"),
            rate_limit(max = 5),
            concurrency(by = []),
            concurrency(max = 2)
        ))
        .err()
        .unwrap_or_default();
        for part in [
            "invalid queue name `a b`",
            "`a` specified more than once",
            "invalid duration \"10x\" for `for`",
            "unknown `until` value `never`; expected `done` or `started`",
            "unknown key `colour` in `unique(...)`; expected `by`, `for`, `until` or `on_conflict`",
            "`max` must be at least 1",
            "`rate_limit(...)` needs `per`",
            "`by` lists no fields; leave `by` out for one limit across the handler",
            "`concurrency(...)` needs `max`",
            "`concurrency` specified more than once",
        ] {
            assert!(err.contains(part), "missing {part:?} in {err}");
        }
    }

    #[test]
    fn keys_in_the_wrong_form() {
        let err = parse_tokens(quote!(unique = "x", queue("a"))).err().unwrap_or_default();
        assert!(err.contains("`unique` is written `unique(...)`"), "{err}");
        assert!(err.contains("`queue` is written `queue = ...`"), "{err}");
    }
}
