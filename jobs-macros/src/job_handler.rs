//! `#[job_handler("name", ...)]`: its options, and the rules for a handler's signature.

use syn::{FnArg, GenericArgument, Ident, LitStr, PathArguments, ReturnType, Signature, Type};

use crate::attrs::{self, AttrArgs, Errors};
use crate::flow::{self, FlowArgs};

/// The options of `#[job_handler]`.
#[derive(Default)]
pub(crate) struct HandlerArgs {
    pub name: Option<LitStr>,
    pub max_retries: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub priority: Option<Ident>,
    /// `crate = "..."`: the path to jobs-core, if not the one found in Cargo.toml.
    pub krate: Option<syn::Path>,
    pub retry_base_ms: Option<u64>,
    pub retry_cap_ms: Option<u64>,
    /// `queue = "..."`, `unique(...)`, `rate_limit(...)`, `concurrency(...)`.
    pub flow: FlowArgs,
}

/// The most retries a job may have (jobs-core's `MAX_RETRIES`).
const MAX_RETRIES: u32 = 1000;

const OPTIONS: &[&str] =
    &["queue", "max_retries", "timeout", "priority", "retry_base", "retry_cap", "crate"];

impl HandlerArgs {
    /// Parses and validates `"name", max_retries = N, timeout = "30s", priority = "high",
    /// retry_base = "10s", retry_cap = "5m"` and the flow options (see `flow`).
    pub(crate) fn parse(raw: &attrs::RawAttr, errors: &mut Errors) -> Option<Self> {
        let args = match AttrArgs::parse(raw.tokens.clone()) {
            Ok(a) => a,
            Err(e) => {
                errors.push(e);
                return None;
            }
        };
        let mut out = HandlerArgs::default();
        let mut positional = args.positional.iter();
        match positional.next() {
            Some(syn::Lit::Str(s)) => {
                attrs::check_name(s, errors);
                out.name = Some(s.clone());
            }
            Some(other) => errors.spanned(other, "expected the handler's name as a string literal, e.g. #[job_handler(\"send_email\")]"),
            None => {}
        }
        for extra in positional {
            errors
                .spanned(extra, "#[job_handler] takes one positional argument, the handler's name");
        }
        args.check_options("job_handler", OPTIONS, flow::LISTS, flow::REPEATABLE, errors);
        out.flow = FlowArgs::parse(&args, errors);
        if let Some(opt) = args.option("max_retries") {
            match &opt.value {
                attrs::OptValue::Int(i) => match i.base10_parse::<u32>() {
                    Ok(n) if n <= MAX_RETRIES => out.max_retries = Some(n),
                    Ok(n) => errors.spanned(
                        i,
                        format!("max_retries must be at most {MAX_RETRIES}, found {n}"),
                    ),
                    Err(e) => errors.push(e),
                },
                other => {
                    errors.push(syn::Error::new(other.span(), "`max_retries` expects an integer"))
                }
            }
        }
        if let Some(opt) = args.option("timeout") {
            out.timeout_ms = attrs::parse_timeout(opt, errors);
        }
        if let Some(opt) = args.option("priority")
            && let Some(s) = attrs::expect_str(opt, errors)
        {
            out.priority = attrs::parse_priority(s, errors);
        }
        if let Some(opt) = args.option("crate") {
            out.krate = attrs::parse_crate(opt, errors);
        }
        let base = args.option("retry_base");
        let cap = args.option("retry_cap");
        out.retry_base_ms = base.and_then(|opt| attrs::parse_retry_delay(opt, errors));
        out.retry_cap_ms = cap.and_then(|opt| attrs::parse_retry_delay(opt, errors));
        if let (Some(b), Some(c), Some(base)) = (out.retry_base_ms, out.retry_cap_ms, base)
            && b > c
        {
            errors.spanned(
                &base.value,
                format!(
                    "retry_base ({}) must not exceed retry_cap ({}): the first retry would wait \
                     longer than the longest wait",
                    shown(base),
                    cap.map(shown).unwrap_or_default()
                ),
            );
        }
        Some(out)
    }
}

/// A duration option's value as written (`"10m"`, `30` seconds).
fn shown(opt: &attrs::Opt) -> String {
    match &opt.value {
        attrs::OptValue::Str(s) => format!("\"{}\"", s.value()),
        attrs::OptValue::Int(i) => format!("{i} s"),
        _ => String::new(),
    }
}

/// A handler function's signature, as the rules allow it.
pub(crate) struct HandlerSig {
    /// The argument type, if the function takes arguments.
    pub args_ty: Option<Type>,
    /// Whether it takes a `JobContext` (always last).
    pub has_ctx: bool,
    pub output: Output,
}

/// What the function returns.
pub(crate) enum Output {
    /// Nothing.
    Unit,
    /// `Result<R, E>`, spelled so: checked part by part, so errors point at `R` or `E`.
    Result { ok: Box<Type>, err: Box<Type> },
    /// Something else: checked as a whole.
    Other(Box<Type>),
}

/// Checks the rules for a handler's signature, reporting every violation.
pub(crate) fn check_signature(
    sig: &Signature,
    macro_name: &str,
    errors: &mut Errors,
) -> Option<HandlerSig> {
    let mut ok = true;
    let mut fail = |errors: &mut Errors, e: syn::Error| {
        ok = false;
        errors.push(e);
    };
    if sig.asyncness.is_none() {
        fail(
            errors,
            syn::Error::new_spanned(
                sig.fn_token,
                format!("#[{macro_name}] requires an `async fn`"),
            ),
        );
    }
    if let Some(c) = &sig.constness {
        fail(errors, syn::Error::new_spanned(c, "a job handler cannot be a `const fn`"));
    }
    if let Some(u) = &sig.unsafety {
        fail(errors, syn::Error::new_spanned(u, "a job handler cannot be an `unsafe fn`"));
    }
    if let Some(abi) = &sig.abi {
        fail(errors, syn::Error::new_spanned(abi, "a job handler cannot have an `extern` ABI"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let span: &dyn quote::ToTokens =
            if sig.generics.params.is_empty() { &sig.generics.where_clause } else { &sig.generics };
        fail(
            errors,
            syn::Error::new_spanned(
                span,
                "a job handler cannot be generic: the registry needs one concrete function per name",
            ),
        );
    }
    if let Some(v) = &sig.variadic {
        fail(errors, syn::Error::new_spanned(v, "a job handler cannot be variadic"));
    }

    let mut args_ty = None;
    let mut has_ctx = false;
    let params: Vec<&FnArg> = sig.inputs.iter().collect();
    for (i, param) in params.iter().enumerate() {
        let pat_ty = match param {
            FnArg::Receiver(r) => {
                fail(
                    errors,
                    syn::Error::new_spanned(
                        r.self_token,
                        "a job handler must be a free function; `self` is not allowed",
                    ),
                );
                continue;
            }
            FnArg::Typed(t) => t,
        };
        if i >= 2 {
            fail(
                errors,
                syn::Error::new_spanned(
                    param,
                    "a job handler takes at most two parameters: `args: T` and then `ctx: JobContext`",
                ),
            );
            continue;
        }
        if let Type::ImplTrait(it) = &*pat_ty.ty {
            fail(
                errors,
                syn::Error::new_spanned(
                    it,
                    "`impl Trait` parameters are not allowed: a job handler cannot be generic",
                ),
            );
            continue;
        }
        if is_context(&pat_ty.ty) {
            if has_ctx {
                fail(errors, syn::Error::new_spanned(&pat_ty.ty, "`JobContext` taken twice"));
            }
            has_ctx = true;
        } else if has_ctx {
            fail(
                errors,
                syn::Error::new_spanned(
                    &pat_ty.ty,
                    "the arguments must come first and `ctx: JobContext` last",
                ),
            );
        } else {
            args_ty = Some((*pat_ty.ty).clone());
        }
    }

    let output = match &sig.output {
        ReturnType::Default => Output::Unit,
        ReturnType::Type(_, ty) => match result_parts(ty) {
            Some((ok, err)) => Output::Result { ok: Box::new(ok), err: Box::new(err) },
            None => Output::Other(ty.clone()),
        },
    };
    ok.then_some(HandlerSig { args_ty, has_ctx, output })
}

/// A type spelled `JobContext` (any path ending in it).
fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            p.path.segments.last().is_some_and(|s| s.ident == "JobContext" && s.arguments.is_none())
        }
        Type::Group(g) => is_context(&g.elem),
        Type::Paren(p) => is_context(&p.elem),
        _ => false,
    }
}

/// `R` and `E` of a type spelled `Result<R, E>` (any path ending in it).
fn result_parts(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(ab) = &last.arguments else { return None };
    let mut tys = ab.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    let (ok, err) = (tys.next()?, tys.next()?);
    (ab.args.len() == 2).then_some((ok, err))
}

/// `send_email` → `SendEmailJob`.
pub(crate) fn typed_name(fn_ident: &Ident) -> Ident {
    let raw = fn_ident.to_string();
    let raw = raw.strip_prefix("r#").unwrap_or(&raw);
    let mut out = String::new();
    for part in raw.split('_').filter(|p| !p.is_empty()) {
        let mut cs = part.chars();
        if let Some(first) = cs.next() {
            out.extend(first.to_uppercase());
            out.push_str(cs.as_str());
        }
    }
    out.push_str("Job");
    Ident::new(&out, fn_ident.span())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;
    use quote::quote;

    fn sig(tokens: proc_macro2::TokenStream) -> Option<HandlerSig> {
        let f: syn::ItemFn = syn::parse2(tokens).ok()?;
        let mut errors = Errors::default();
        let s = check_signature(&f.sig, "job_handler", &mut errors);
        errors.finish().ok()?;
        s
    }

    #[test]
    fn accepted_signatures() {
        let s = sig(quote!(
            async fn f(a: Args, ctx: JobContext) -> Result<R, E> {}
        ));
        assert!(matches!(
            s,
            Some(HandlerSig { args_ty: Some(_), has_ctx: true, output: Output::Result { .. } })
        ));
        let s = sig(quote!(
            async fn f(ctx: jobs_core::JobContext) {}
        ));
        assert!(matches!(
            s,
            Some(HandlerSig { args_ty: None, has_ctx: true, output: Output::Unit })
        ));
        let s = sig(quote!(
            async fn f() -> anyhow::Result<()> {}
        ));
        assert!(matches!(
            s,
            Some(HandlerSig { args_ty: None, has_ctx: false, output: Output::Other(_) })
        ));
    }

    #[test]
    fn rejected_signatures() {
        assert!(
            sig(quote!(
                fn f() {}
            ))
            .is_none()
        );
        assert!(
            sig(quote!(
                async fn f<T>(a: T) {}
            ))
            .is_none()
        );
        assert!(
            sig(quote!(
                async fn f(&self) {}
            ))
            .is_none()
        );
        assert!(
            sig(quote!(
                async fn f(a: A, b: B, c: C) {}
            ))
            .is_none()
        );
        assert!(
            sig(quote!(
                async fn f(ctx: JobContext, a: A) {}
            ))
            .is_none()
        );
        assert!(
            sig(quote!(
                async fn f(a: impl Serialize) {}
            ))
            .is_none()
        );
    }

    #[test]
    fn typed_names() {
        let n = |s: &str| typed_name(&Ident::new(s, Span::call_site())).to_string();
        assert_eq!(n("sync_portfolio"), "SyncPortfolioJob");
        assert_eq!(n("send"), "SendJob");
        assert_eq!(n("__x_y"), "XYJob");
    }
}
