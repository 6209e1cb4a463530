//! Parsing shared by every attribute: `key = value` options, priorities, timeouts, job names,
//! and finding our sibling attributes on the item.

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitInt, LitStr, Token};

/// Our attribute macros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    JobHandler,
    EveryMinutes,
    EverySeconds,
    DailyAt,
    Cron,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::JobHandler => "job_handler",
            Kind::EveryMinutes => "every_minutes",
            Kind::EverySeconds => "every_seconds",
            Kind::DailyAt => "daily_at",
            Kind::Cron => "cron",
        }
    }

    fn from_path(path: &syn::Path) -> Option<Kind> {
        // Recognised by the last segment, so `#[jobs_core::cron(..)]` and a plain `#[cron(..)]`
        // both count. A renamed import (`use jobs_core::cron as c`) is not recognised; it then
        // expands on its own and registers the handler a second time, which the registry
        // refuses at startup with both locations.
        let last = path.segments.last()?;
        Some(match last.ident.to_string().as_str() {
            "job_handler" => Kind::JobHandler,
            "every_minutes" => Kind::EveryMinutes,
            "every_seconds" => Kind::EverySeconds,
            "daily_at" => Kind::DailyAt,
            "cron" => Kind::Cron,
            _ => return None,
        })
    }
}

/// One of our attributes, not yet parsed.
pub(crate) struct RawAttr {
    pub kind: Kind,
    pub tokens: TokenStream,
    /// Where errors about the attribute as a whole point.
    pub span: Span,
}

/// Removes our attributes from `attrs`, returning them in source order. Each one's arguments
/// are returned as tokens (an attribute without parentheses has none).
pub(crate) fn take_ours(attrs: &mut Vec<Attribute>) -> Vec<RawAttr> {
    let mut ours = Vec::new();
    attrs.retain(|a| match Kind::from_path(a.path()) {
        Some(kind) => {
            let tokens = match &a.meta {
                syn::Meta::List(l) => l.tokens.clone(),
                _ => TokenStream::new(),
            };
            ours.push(RawAttr { kind, tokens, span: a.span() });
            false
        }
        None => true,
    });
    ours
}

/// Accumulates errors so that every mistake is reported at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, msg: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, msg));
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// A value on the right of `key =`.
pub(crate) enum OptValue {
    Str(LitStr),
    Int(LitInt),
    /// A `{...}` or `[...]` group: JSON written inline.
    Json(TokenStream),
    /// Any other expression.
    Expr(Box<syn::Expr>),
}

impl OptValue {
    pub(crate) fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(LitStr) {
            return Ok(OptValue::Str(input.parse()?));
        }
        if input.peek(LitInt) {
            return Ok(OptValue::Int(input.parse()?));
        }
        if let Some((TokenTree::Group(g), _)) = input.cursor().token_tree()
            && matches!(g.delimiter(), Delimiter::Brace | Delimiter::Bracket)
        {
            let tt: TokenTree = input.parse()?;
            return Ok(OptValue::Json(tt.into_token_stream()));
        }
        Ok(OptValue::Expr(Box::new(input.parse()?)))
    }

    pub(crate) fn span(&self) -> Span {
        match self {
            OptValue::Str(s) => s.span(),
            OptValue::Int(i) => i.span(),
            OptValue::Json(t) => t.span(),
            OptValue::Expr(e) => e.span(),
        }
    }
}

impl ToTokens for OptValue {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            OptValue::Str(s) => s.to_tokens(tokens),
            OptValue::Int(i) => i.to_tokens(tokens),
            OptValue::Json(t) => t.to_tokens(tokens),
            OptValue::Expr(e) => e.to_tokens(tokens),
        }
    }
}

/// A parsed `key = value`.
pub(crate) struct Opt {
    pub key: Ident,
    pub value: OptValue,
}

/// A parsed `key(...)`: a nested list, its contents left as tokens for its own parser.
pub(crate) struct Group {
    pub key: Ident,
    pub tokens: TokenStream,
}

/// An attribute's arguments: positional literals first, then `key = value` options and
/// `key(...)` groups in any order.
pub(crate) struct AttrArgs {
    pub positional: Vec<syn::Lit>,
    pub options: Vec<Opt>,
    pub groups: Vec<Group>,
}

impl AttrArgs {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let parser = |input: ParseStream<'_>| {
            let mut positional = Vec::new();
            let mut options = Vec::new();
            let mut groups = Vec::new();
            while !input.is_empty() {
                // `crate` is a keyword, which `peek(Ident)` does not match.
                if (input.peek(Ident) || input.peek(Token![crate])) && input.peek2(Token![=]) {
                    let key = input.call(syn::ext::IdentExt::parse_any)?;
                    input.parse::<Token![=]>()?;
                    let value = OptValue::parse(input)?;
                    options.push(Opt { key, value });
                } else if input.peek(Ident) && input.peek2(syn::token::Paren) {
                    let key = input.parse()?;
                    let content;
                    syn::parenthesized!(content in input);
                    groups.push(Group { key, tokens: content.parse()? });
                } else if options.is_empty() && groups.is_empty() {
                    positional.push(input.parse::<syn::Lit>()?);
                } else {
                    return Err(
                        input.error("positional arguments must come before `key = value` options")
                    );
                }
                if input.is_empty() {
                    break;
                }
                input.parse::<Token![,]>()?;
            }
            Ok(AttrArgs { positional, options, groups })
        };
        parser.parse2(tokens)
    }

    /// Checks the keys: `allowed` are written `key = value`, `lists` are written
    /// `key(...)`, and only those in `repeatable` may be given more than once. Unknown keys,
    /// keys in the wrong form and repeated keys are errors at the key.
    pub(crate) fn check_options(
        &self,
        what: &str,
        allowed: &[&str],
        lists: &[&str],
        repeatable: &[&str],
        errors: &mut Errors,
    ) {
        let expected = || {
            let mut all: Vec<String> = allowed.iter().map(|k| (*k).to_owned()).collect();
            all.extend(lists.iter().map(|k| format!("{k}(...)")));
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            one_of(&all)
        };
        let mut seen = Seen::default();
        let keys = self.options.iter().map(|o| (&o.key, false));
        for (ident, is_list) in keys.chain(self.groups.iter().map(|g| (&g.key, true))) {
            let key = ident.to_string();
            let (shown, right_form, other_form) = if is_list {
                (format!("{key}(...)"), lists, allowed)
            } else {
                (key.clone(), allowed, lists)
            };
            if other_form.contains(&key.as_str()) {
                let form = if is_list { format!("{key} = ...") } else { format!("{key}(...)") };
                errors.spanned(ident, format!("`{key}` is written `{form}`"));
            } else if !right_form.contains(&key.as_str()) {
                errors.spanned(
                    ident,
                    format!("unknown option `{shown}` for #[{what}]; expected {}", expected()),
                );
            } else if !(is_list && repeatable.contains(&key.as_str())) {
                seen.first(ident, errors);
            }
        }
    }

    /// The first option named `key`.
    pub(crate) fn option(&self, key: &str) -> Option<&Opt> {
        self.options.iter().find(|o| o.key == key)
    }
}

/// The keys given so far: the one check for a key given twice, wherever keys are listed.
#[derive(Default)]
pub(crate) struct Seen(Vec<String>);

impl Seen {
    /// Whether `key` comes for the first time; a repeat is reported at it.
    pub(crate) fn first(&mut self, key: &Ident, errors: &mut Errors) -> bool {
        let name = key.to_string();
        if self.0.contains(&name) {
            errors.spanned(key, format!("`{name}` specified more than once"));
            false
        } else {
            self.0.push(name);
            true
        }
    }
}

/// `crate = "path::to::jobs_core"`: where the generated code finds the facade crate, for
/// crates that re-export it under another path.
pub(crate) fn parse_crate(opt: &Opt, errors: &mut Errors) -> Option<syn::Path> {
    let lit = expect_str(opt, errors)?;
    match lit.parse::<syn::Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            errors.spanned(
                lit,
                "`crate` expects a path to jobs-core as a string, e.g. `crate = \"my_app::jobs_core\"`",
            );
            None
        }
    }
}

/// "`a`, `b` or `c`".
pub(crate) fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// A string option's value, or an error at the value.
pub(crate) fn expect_str<'a>(opt: &'a Opt, errors: &mut Errors) -> Option<&'a LitStr> {
    match &opt.value {
        OptValue::Str(s) => Some(s),
        other => {
            errors.push(syn::Error::new(
                other.span(),
                format!("`{}` expects a string literal", opt.key),
            ));
            None
        }
    }
}

/// `priority = "high"` → the variant name.
pub(crate) fn parse_priority(lit: &LitStr, errors: &mut Errors) -> Option<Ident> {
    let v = lit.value();
    let variant = match v.to_ascii_lowercase().as_str() {
        "critical" => "Critical",
        "high" => "High",
        "normal" => "Normal",
        "low" => "Low",
        _ => {
            errors.spanned(
                lit,
                format!("unknown priority `{v}`; expected `critical`, `high`, `normal` or `low`"),
            );
            return None;
        }
    };
    Some(Ident::new(variant, lit.span()))
}

/// The longest timeout, as jobs-core's `MAX_TIMEOUT` (one week), in milliseconds.
const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;

/// The longest retry delay, as jobs-core's `MAX_RETRY_DELAY` (a year), in milliseconds.
const MAX_RETRY_DELAY_MS: u64 = 365 * 24 * 3600 * 1000;

/// `timeout = "30s"` / `"500ms"` / `"5m"` / `"1h"` / `"1d"`, or a number of seconds.
pub(crate) fn parse_timeout(opt: &Opt, errors: &mut Errors) -> Option<u64> {
    parse_duration(&opt.key.to_string(), &opt.value, MAX_TIMEOUT_MS, "7 days", errors)
}

/// `retry_base = "10s"` / `retry_cap = "5m"`: a duration as for `timeout`, up to a year.
pub(crate) fn parse_retry_delay(opt: &Opt, errors: &mut Errors) -> Option<u64> {
    parse_duration(&opt.key.to_string(), &opt.value, MAX_RETRY_DELAY_MS, "365 days", errors)
}

/// A duration (`"30s"` or a number of seconds) in milliseconds, between 1 ms and `max_ms`
/// (`max` in words); `key` names it in errors.
pub(crate) fn parse_duration(
    key: &str,
    value: &OptValue,
    max_ms: u64,
    max: &str,
    errors: &mut Errors,
) -> Option<u64> {
    let (ms, span) = match value {
        OptValue::Int(i) => match i.base10_parse::<u64>() {
            Ok(secs) => (secs.checked_mul(1000), i.span()),
            Err(e) => {
                errors.push(e);
                return None;
            }
        },
        OptValue::Str(s) => match duration_ms(&s.value(), key) {
            Ok(ms) => (ms, s.span()),
            Err(msg) => {
                errors.push(syn::Error::new(s.span(), msg));
                return None;
            }
        },
        other => {
            errors.push(syn::Error::new(
                other.span(),
                format!("`{key}` expects a duration string such as \"30s\" or a number of seconds"),
            ));
            return None;
        }
    };
    match ms {
        Some(ms) if ms > 0 && ms <= max_ms => Some(ms),
        _ => {
            errors.push(syn::Error::new(span, format!("`{key}` must be between 1 ms and {max}")));
            None
        }
    }
}

/// Milliseconds of a duration string; `Ok(None)` on overflow. `what` names the option in
/// the error.
pub(crate) fn duration_ms(s: &str, what: &str) -> Result<Option<u64>, String> {
    let bad = || {
        format!(
            "invalid duration \"{s}\" for `{what}`; expected a number followed by `ms`, `s`, `m`, `h` or `d`, e.g. \"30s\""
        )
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    Ok(n.checked_mul(factor))
}

/// Job and schedule names: what `NewJob::validate` accepts.
pub(crate) fn check_name(lit: &LitStr, errors: &mut Errors) {
    let v = lit.value();
    if v.is_empty() || v.len() > 200 {
        errors.spanned(lit, "name must be 1 to 200 bytes long");
    } else if v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        errors.spanned(lit, "name must not contain whitespace or control characters");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        let timeout_ms = |s: &str| duration_ms(s, "timeout");
        assert_eq!(timeout_ms("30s"), Ok(Some(30_000)));
        assert_eq!(timeout_ms("500ms"), Ok(Some(500)));
        assert_eq!(timeout_ms("5m"), Ok(Some(300_000)));
        assert_eq!(timeout_ms("2h"), Ok(Some(7_200_000)));
        assert_eq!(timeout_ms("1d"), Ok(Some(86_400_000)));
        assert_eq!(timeout_ms("45"), Ok(Some(45_000)));
        assert!(timeout_ms("thirty").is_err());
        assert!(timeout_ms("30x").is_err());
        assert!(timeout_ms("s").is_err());
        assert_eq!(timeout_ms("99999999999999999999d").ok(), None);
    }

    #[test]
    fn one_of_lists() {
        assert_eq!(one_of(&["a"]), "`a`");
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }

    #[test]
    fn options_after_positionals() {
        let a = AttrArgs::parse(quote::quote!(5, name = "x", args = {"a": 1})).ok();
        let a = a.map(|a| (a.positional.len(), a.options.len()));
        assert_eq!(a, Some((1, 2)));
        assert!(AttrArgs::parse(quote::quote!(name = "x", 5)).is_err());
    }
}
