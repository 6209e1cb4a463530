//! One expansion for every attribute: whichever of our attributes expands first takes the
//! others off the function and expands them all together, so that `#[job_handler]` and
//! schedule attributes combine in any order and the handler is registered exactly once.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::{Ident, ItemFn, LitStr};

use crate::attrs::{self, Errors, Kind, OptValue, RawAttr};
use crate::flow::{self, By, FlowArgs};
use crate::job_handler::{self, HandlerArgs, HandlerSig, Output};
use crate::schedule::{ScheduleSpec, When};

/// Expands attribute `kind` with arguments `attr` on `item`.
pub(crate) fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let msg = format!("#[{}] can only be applied to an `async fn`", kind.name());
            let err = syn::Error::new(Span::call_site(), msg).to_compile_error();
            return quote!(#err #item);
        }
    };
    let mut raws = vec![RawAttr { kind, tokens: attr, span: Span::call_site() }];
    raws.extend(attrs::take_ours(&mut func.attrs));

    match build(&func, &raws) {
        Ok(tokens) => tokens,
        // The function is still emitted (without our attributes), so that its callers do
        // not get a cascade of "cannot find function" errors.
        Err(e) => {
            let err = e.to_compile_error();
            quote!(#err #func)
        }
    }
}

fn build(func: &ItemFn, raws: &[RawAttr]) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let mut handler: Option<HandlerArgs> = None;
    let mut seen_handler = false;
    let mut schedules = Vec::new();
    for raw in raws {
        if raw.kind == Kind::JobHandler {
            if seen_handler {
                errors.push(syn::Error::new(raw.span, "#[job_handler] specified more than once"));
                continue;
            }
            seen_handler = true;
            handler = HandlerArgs::parse(raw, &mut errors);
        } else if let Some(s) = ScheduleSpec::parse(raw, &mut errors) {
            schedules.push(s);
        }
    }
    let sig = job_handler::check_signature(
        &func.sig,
        raws.first().map_or("job_handler", |r| r.kind.name()),
        &mut errors,
    );
    let handler = handler.unwrap_or_default();
    let fn_ident = &func.sig.ident;
    let fn_name = fn_ident.to_string();
    let fn_name = fn_name.strip_prefix("r#").unwrap_or(&fn_name);
    let name = handler.name.clone().unwrap_or_else(|| LitStr::new(fn_name, fn_ident.span()));

    // Schedule names default to the handler's; two schedules on one function need names.
    let mut names: Vec<String> = Vec::new();
    for s in &schedules {
        let n = s.name.as_ref().unwrap_or(&name).value();
        if names.contains(&n) {
            errors.push(syn::Error::new(
                s.span,
                format!("a schedule named `{n}` is already defined on this function; give this one a `name = \"...\"`"),
            ));
        }
        names.push(n);
    }
    // `by` names fields of the arguments: a handler without any has none to name.
    if let Some(sig) = &sig
        && sig.args_ty.is_none()
    {
        for by in handler.flow.by_lists() {
            errors.push(syn::Error::new(
                by.span,
                format!(
                    "`by` names fields of the handler's arguments, but `{fn_name}` takes no \
                     arguments; leave `by` out (one key for the handler)"
                ),
            ));
        }
    }
    errors.finish()?;
    // Every check above reported into `errors`; a `None` here means one of them failed.
    let Some(sig) = sig else {
        return Err(syn::Error::new(Span::call_site(), "invalid job handler"));
    };
    // The facade: `crate = "..."` on any of the attributes, else jobs-core under the name
    // the user's Cargo.toml gives it.
    let krate = handler
        .krate
        .as_ref()
        .or_else(|| schedules.iter().find_map(|s| s.krate.as_ref()))
        .map(|p| p.to_token_stream())
        .unwrap_or_else(facade_crate);
    Ok(generate(func, &name, &handler, &sig, &schedules, &krate))
}

/// The path of jobs-core as the crate being compiled names it: `::jobs_core`, or `::jobs`
/// after `jobs = { package = "jobs-core", ... }`. Inside jobs-core itself (its tests and
/// doctests) that is `::jobs_core` too: jobs-core declares `extern crate self as jobs_core`,
/// and its doctests depend on it under that name. When jobs-core is not a direct dependency
/// (reached through another crate's re-export) the answer is `::jobs_core` as well; such
/// crates say where it is with `crate = "..."`.
fn facade_crate() -> TokenStream {
    use proc_macro_crate::{FoundCrate, crate_name};
    match crate_name("jobs-core") {
        Ok(FoundCrate::Name(name)) => {
            let ident = proc_macro2::Ident::new(&name, Span::call_site());
            quote!(::#ident)
        }
        Ok(FoundCrate::Itself) | Err(_) => quote!(::jobs_core),
    }
}

fn generate(
    func: &ItemFn,
    name: &LitStr,
    handler: &HandlerArgs,
    sig: &HandlerSig,
    schedules: &[ScheduleSpec],
    krate: &TokenStream,
) -> TokenStream {
    let p = quote!(#krate::__private);
    let fn_ident = &func.sig.ident;
    let vis = &func.vis;
    let job_ty = job_handler::typed_name(fn_ident);

    let args_ty = match &sig.args_ty {
        Some(t) => t.to_token_stream(),
        None => quote!(()),
    };
    let takes_args = sig.args_ty.is_some();
    let opt = |v: Option<TokenStream>| match v {
        Some(t) => quote!(::core::option::Option::Some(#t)),
        None => quote!(::core::option::Option::None),
    };
    let max_retries = opt(handler.max_retries.map(|n| quote!(#n)));
    let timeout = opt(handler.timeout_ms.map(|ms| quote!(#p::Duration::from_millis(#ms))));
    let priority = opt(handler.priority.as_ref().map(|v| quote!(#p::JobPriority::#v)));
    let millis = |v: Option<u64>| opt(v.map(|ms| quote!(#p::Duration::from_millis(#ms))));
    let retry_base = millis(handler.retry_base_ms);
    let retry_cap = millis(handler.retry_cap_ms);

    // The call of the user's function, as written.
    let call_args = match (takes_args, sig.has_ctx) {
        (true, true) => quote!(args, ctx),
        (true, false) => quote!(args),
        (false, true) => quote!(ctx),
        (false, false) => quote!(),
    };
    let decode = if takes_args {
        quote!(let args = <#job_ty as #p::HandlerArgs>::decode(args)?;)
    } else {
        quote!(let _ = args;)
    };
    let drop_ctx = if sig.has_ctx { quote!() } else { quote!(let _ = ctx;) };
    let validate = if takes_args {
        quote!(<#job_ty as #p::HandlerArgs>::validate)
    } else {
        quote!(#p::validate_none)
    };
    // The argument type's JSON Schema when it has one, chosen at compile time without
    // requiring it (see `SchemaProbe`). A handler without arguments keeps the default (none).
    let with_schema = takes_args.then(|| {
        quote!(.with_args_schema({
            fn __jobs_schema() -> ::core::option::Option<#p::serde_json::Value> {
                #[allow(unused_imports)]
                use #p::{NoJsonSchema as _, ViaJsonSchema as _};
                (&&#p::SchemaProbe::<#args_ty>::new()).args_schema()
            }
            __jobs_schema
        }))
    });
    let (returns_impl, finish) = match &sig.output {
        Output::Unit => (
            quote!(impl #p::ReturnsOther for #job_ty { type Output = (); }),
            quote!(<#job_ty as #p::ReturnsOther>::finish),
        ),
        Output::Result { ok, err } => (
            quote!(impl #p::ReturnsResult for #job_ty { type Ok = #ok; type Err = #err; }),
            quote!(<#job_ty as #p::ReturnsResult>::finish),
        ),
        Output::Other(t) => (
            quote!(impl #p::ReturnsOther for #job_ty { type Output = #t; }),
            quote!(<#job_ty as #p::ReturnsOther>::finish),
        ),
    };
    // Span the boxing at the function's name, so that a future that is not `Send` is
    // reported there.
    let boxed = quote_spanned! {fn_ident.span()=>
        #p::Box::pin(async move {
            #decode
            #drop_ctx
            #finish(#fn_ident(#call_args).await)
        })
    };
    let location = |span: Span| {
        quote_spanned! {span=>
            #p::Location { file: ::core::file!(), line: ::core::line!(), module_path: ::core::module_path!() }
        }
    };
    let handler_loc = location(fn_ident.span());
    let flow = flow_control(&handler.flow, &p);
    let by_checks = sig.args_ty.as_ref().map(|ty| by_checks(&handler.flow, ty));

    let schedule_items = schedules.iter().enumerate().map(|(i, s)| {
        let args_fn = format_ident!("__jobs_schedule_args_{}", i);
        let sched_name = s.name.as_ref().unwrap_or(name);
        let kind = match &s.when {
            When::Interval { secs } => quote!(#p::ScheduleKind::Interval { secs: #secs }),
            When::Cron { expr } => quote!(#p::ScheduleKind::Cron { expr: #expr }),
        };
        let priority = opt(s.priority.as_ref().map(|v| quote!(#p::JobPriority::#v)));
        let body = match &s.args {
            None => quote_spanned! {s.span=>
                #p::default_args::<<#job_ty as #p::JobDefinition>::Args>()
            },
            Some(OptValue::Json(t)) => {
                quote!(::core::result::Result::Ok(#p::serde_json::json!(#t)))
            }
            Some(OptValue::Str(lit)) => quote!(#p::json_str_args(#lit)),
            Some(v @ (OptValue::Int(_) | OptValue::Expr(_))) => {
                quote_spanned! {v.span()=> <#job_ty as #p::HandlerArgs>::encode(#v) }
            }
        };
        let loc = location(s.span);
        quote! {
            fn #args_fn() -> ::core::result::Result<#p::serde_json::Value, ::std::string::String> {
                #body
            }
            #p::inventory::submit! {
                #p::ScheduleRegistration::new(
                    #sched_name,
                    <#job_ty as #p::JobDefinition>::NAME,
                    #kind,
                    #priority,
                    #args_fn,
                    #loc,
                )
            }
        }
    });

    let doc = format!(
        "The job handler `{}` (the function `{}`) as a type: enqueue it with \
         `queue.enqueue_typed::<{}>(args)`.",
        name.value(),
        fn_ident,
        job_ty
    );
    quote! {
        #func

        #[doc = #doc]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #job_ty;

        const _: () = {
            impl #p::JobDefinition for #job_ty {
                const NAME: &'static str = #name;
                type Args = #args_ty;
                const DEFAULTS: #p::HandlerDefaults = #p::HandlerDefaults {
                    max_retries: #max_retries,
                    timeout: #timeout,
                    priority: #priority,
                    retry_base: #retry_base,
                    retry_cap: #retry_cap,
                };
            }

            #returns_impl

            fn __jobs_call(
                args: #p::serde_json::Value,
                ctx: #p::JobContext,
            ) -> #p::BoxFuture<::core::result::Result<#p::serde_json::Value, #p::JobError>> {
                #boxed
            }

            #p::inventory::submit! {
                #p::HandlerRegistration::new(
                    <#job_ty as #p::JobDefinition>::NAME,
                    __jobs_call,
                    #validate,
                    <#job_ty as #p::HandlerArgs>::args_type,
                    #takes_args,
                    <#job_ty as #p::JobDefinition>::DEFAULTS,
                    #handler_loc,
                )
                #with_schema
                .with_flow(#flow)
            }

            #by_checks

            #(#schedule_items)*
        };
    }
}

/// The `FlowControl` value of the handler's flow options.
fn flow_control(f: &FlowArgs, p: &TokenStream) -> TokenStream {
    let queue = f.queue.as_ref().map_or_else(|| quote!(#p::DEFAULT_QUEUE), |q| quote!(#q));
    let fields = |by: &Option<By>| {
        let names = by.iter().flat_map(|b| b.fields.iter().map(flow::field_name));
        quote!(&[#(#names),*])
    };
    let millis = |ms: u64| quote!(#p::Duration::from_millis(#ms));
    let unique = match &f.unique {
        Some(u) => {
            let by = fields(&u.by);
            let window = millis(u.window_ms);
            let until = Ident::new(u.until, Span::call_site());
            let on_conflict = Ident::new(u.on_conflict, Span::call_site());
            quote!(::core::option::Option::Some(#p::UniqueSpec {
                by: #by,
                window: #window,
                until: #p::UniqueUntil::#until,
                on_conflict: #p::OnConflict::#on_conflict,
            }))
        }
        None => quote!(::core::option::Option::None),
    };
    let rates = f.rate_limits.iter().map(|r| {
        let (max, per, by) = (r.max, millis(r.per_ms), fields(&r.by));
        quote!(#p::RateLimit { max: #max, per: #per, by: #by })
    });
    let concurrency = match &f.concurrency {
        Some(c) => {
            let (max, by) = (c.max, fields(&c.by));
            quote!(::core::option::Option::Some(#p::ConcurrencyLimit { max: #max, by: #by }))
        }
        None => quote!(::core::option::Option::None),
    };
    quote!(#p::FlowControl {
        queue: #queue,
        unique: #unique,
        rate_limits: &[#(#rates),*],
        concurrency: #concurrency,
    })
}

/// A closure that is never called and reads each field named in a `by`: a field the
/// argument type lacks (or an argument type that is not a struct) is then rustc's own
/// error, at the name as the user wrote it.
fn by_checks(f: &FlowArgs, args_ty: &syn::Type) -> TokenStream {
    let fields: Vec<&Ident> = f.by_lists().flat_map(|b| b.fields.iter()).collect();
    if fields.is_empty() {
        return TokenStream::new();
    }
    quote! {
        #[allow(unused)]
        fn __jobs_by_fields() {
            let _ = |__jobs_args: &#args_ty| {
                #( let _ = &__jobs_args.#fields; )*
            };
        }
    }
}
