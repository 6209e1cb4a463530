//! `#[every_minutes(N)]`, `#[every_seconds(N)]`, `#[daily_at(H, M)]`, `#[cron("...")]`:
//! parsing and compile-time validation of a schedule attribute.

use croner::parser::{CronParser, Seconds, Year};
use proc_macro2::Span;
use syn::{Ident, LitStr};

use crate::attrs::{self, AttrArgs, Errors, Kind, OptValue, RawAttr};

/// When a schedule fires.
pub(crate) enum When {
    Interval { secs: u64 },
    Cron { expr: String },
}

/// A validated schedule attribute.
pub(crate) struct ScheduleSpec {
    pub when: When,
    pub name: Option<LitStr>,
    pub priority: Option<Ident>,
    pub args: Option<OptValue>,
    /// `crate = "..."`: the path to jobs-core, if not the one found in Cargo.toml.
    pub krate: Option<syn::Path>,
    /// The attribute, for errors about it as a whole.
    pub span: Span,
}

const OPTIONS: &[&str] = &["name", "priority", "args", "crate"];

/// The five fields of a cron expression and what each allows.
const CRON_FIELDS: [(&str, &str); 5] = [
    ("minute", "0–59"),
    ("hour", "0–23"),
    ("day of month", "1–31"),
    ("month", "1–12 (or JAN–DEC)"),
    ("day of week", "0–7 (or SUN–SAT; 0 and 7 are Sunday)"),
];

/// Parses a 5-field cron expression exactly as the runtime does: `croner`, seconds and years
/// disallowed, 0 and 7 both Sunday. croner does not say which field it rejects, so the
/// error does: each field is tried alone (the others `*`), and the first that fails is
/// named (`hour: 25 is out of range 0–23`).
pub(crate) fn check_cron(expr: &str) -> Result<(), String> {
    let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
    let parse = |e: &str| parser.parse(e).map(drop).map_err(|e| e.to_string());
    let Err(whole) = parse(expr) else { return Ok(()) };
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != CRON_FIELDS.len() {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        ));
    }
    for (i, (name, range)) in CRON_FIELDS.iter().enumerate() {
        let mut probe = ["*"; 5];
        probe[i] = fields[i];
        if let Err(e) = parse(&probe.join(" ")) {
            let value = fields[i];
            return Err(if e.contains("out of bounds") {
                format!("{name}: {value} is out of range {range}")
            } else {
                format!("{name}: `{value}` is not valid ({e}); allowed: {range}")
            });
        }
    }
    Err(whole)
}

impl ScheduleSpec {
    pub(crate) fn parse(raw: &RawAttr, errors: &mut Errors) -> Option<Self> {
        let args = match AttrArgs::parse(raw.tokens.clone()) {
            Ok(a) => a,
            Err(e) => {
                errors.push(e);
                return None;
            }
        };
        let what = raw.kind.name();
        args.check_options(what, OPTIONS, &[], &[], errors);
        let when = match raw.kind {
            Kind::EveryMinutes | Kind::EverySeconds => {
                let unit = if raw.kind == Kind::EveryMinutes { "minute" } else { "second" };
                let n = positional_ints(
                    &args,
                    1,
                    raw,
                    &format!("#[{what}(N)] takes the interval in {unit}s, e.g. #[{what}(5)]"),
                    errors,
                )?;
                let (lit, n) = n.into_iter().next()?;
                if n == 0 {
                    errors.spanned(&lit, format!("interval must be at least 1 {unit}, found 0"));
                    return None;
                }
                let secs = if raw.kind == Kind::EveryMinutes { n.checked_mul(60) } else { Some(n) };
                match secs {
                    Some(secs) => When::Interval { secs },
                    None => {
                        errors.spanned(&lit, "interval too large");
                        return None;
                    }
                }
            }
            Kind::DailyAt => {
                let hm = positional_ints(
                    &args,
                    2,
                    raw,
                    "#[daily_at(H, M)] takes an hour and a minute (UTC), e.g. #[daily_at(8, 0)]",
                    errors,
                )?;
                let [(hl, h), (ml, m)] = <[_; 2]>::try_from(hm).ok()?;
                let mut bad = false;
                if h > 23 {
                    errors.spanned(&hl, format!("hour must be in 0..=23, found {h}"));
                    bad = true;
                }
                if m > 59 {
                    errors.spanned(&ml, format!("minute must be in 0..=59, found {m}"));
                    bad = true;
                }
                if bad {
                    return None;
                }
                When::Cron { expr: format!("{m} {h} * * *") }
            }
            Kind::Cron => {
                let usage = "#[cron(\"m h dom mon dow\")] takes a 5-field cron expression, e.g. #[cron(\"0 8 * * 1-5\")]";
                let lit = match args.positional.as_slice() {
                    [syn::Lit::Str(s)] => s.clone(),
                    [] => {
                        errors.push(syn::Error::new(raw.span, usage));
                        return None;
                    }
                    [first, ..] => {
                        errors.spanned(first, usage);
                        return None;
                    }
                };
                let expr = lit.value();
                if let Err(e) = check_cron(&expr) {
                    errors.spanned(&lit, format!("invalid cron expression \"{expr}\": {e}"));
                    return None;
                }
                When::Cron { expr: expr.trim().to_owned() }
            }
            Kind::JobHandler => return None,
        };

        let mut spec = ScheduleSpec {
            when,
            name: None,
            priority: None,
            args: None,
            krate: None,
            span: raw.span,
        };
        if let Some(opt) = args.option("crate") {
            spec.krate = attrs::parse_crate(opt, errors);
        }
        if let Some(opt) = args.option("name")
            && let Some(s) = attrs::expect_str(opt, errors)
        {
            attrs::check_name(s, errors);
            spec.name = Some(s.clone());
        }
        if let Some(opt) = args.option("priority")
            && let Some(s) = attrs::expect_str(opt, errors)
        {
            spec.priority = attrs::parse_priority(s, errors);
        }
        if let Some(opt) = args.options.iter().find(|o| o.key == "args") {
            if let OptValue::Str(s) = &opt.value
                && let Err(e) = serde_json::from_str::<serde_json::Value>(&s.value())
            {
                errors.spanned(s, format!("`args` is not valid JSON: {e}"));
            }
            spec.args = Some(match &opt.value {
                OptValue::Str(s) => OptValue::Str(s.clone()),
                OptValue::Int(i) => OptValue::Int(i.clone()),
                OptValue::Json(t) => OptValue::Json(t.clone()),
                OptValue::Expr(e) => OptValue::Expr(e.clone()),
            });
        }
        Some(spec)
    }
}

/// Exactly `count` positional non-negative integers.
fn positional_ints(
    args: &AttrArgs,
    count: usize,
    raw: &RawAttr,
    usage: &str,
    errors: &mut Errors,
) -> Option<Vec<(syn::LitInt, u64)>> {
    if args.positional.len() != count {
        match args.positional.get(count) {
            Some(extra) => errors.spanned(extra, usage),
            None => errors.push(syn::Error::new(raw.span, usage)),
        }
        return None;
    }
    let mut out = Vec::new();
    for lit in &args.positional {
        match lit {
            syn::Lit::Int(i) => match i.base10_parse::<u64>() {
                Ok(n) => out.push((i.clone(), n)),
                Err(e) => errors.push(e),
            },
            other => errors.spanned(other, usage),
        }
    }
    (out.len() == count).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions_are_checked_like_the_runtime() {
        assert!(check_cron("0 8 * * *").is_ok());
        assert!(check_cron("*/5 * * * 1-5").is_ok());
        assert!(check_cron("0 0 * * 7").is_ok());
        assert!(check_cron("0 0 * * 0").is_ok());
        assert!(check_cron("61 * * * *").is_err());
        assert!(check_cron("0 8 * *").is_err());
        assert!(check_cron("0 0 8 * * *").is_err());
        assert!(check_cron("not cron").is_err());
    }

    #[test]
    fn cron_errors_name_the_field() {
        assert_eq!(check_cron("61 * * * *"), Err("minute: 61 is out of range 0–59".into()));
        assert_eq!(check_cron("0 25 * * *"), Err("hour: 25 is out of range 0–23".into()));
        assert_eq!(check_cron("0 0 32 * *"), Err("day of month: 32 is out of range 1–31".into()));
        assert!(
            check_cron("0 0 * 13 *").is_err_and(|e| e.starts_with("month: 13 is out of range"))
        );
        assert!(check_cron("0 0 * * 8").is_err_and(|e| e.starts_with("day of week: 8 is out")));
        assert!(check_cron("0 x * * *").is_err_and(|e| e.starts_with("hour: `x` is not valid")));
        assert!(check_cron("0 8 * *").is_err_and(|e| e.contains("expected 5 fields")));
    }
}
