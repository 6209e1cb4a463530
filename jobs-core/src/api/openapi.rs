//! The OpenAPI document, generated from the endpoints' `#[utoipa::path]` annotations and
//! the request/response types' `ToSchema` derives (see [`routes`](super::routes)), and the
//! endpoint that serves it.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;

/// The parts of the document that are not endpoints: info, tags, security.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "jobs admin API",
        description = "Operate background jobs: enqueue, inspect and cancel jobs, the \
            dead-letter queue, named queues (pause, resume), schedules and statistics. Every error is \
            `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`. When the server has a \
            token (`JOBS_API_TOKEN`), every endpoint but `health` requires \
            `Authorization: Bearer <token>`.",
    ),
    tags(
        (name = "health", description = "Liveness of the service and its backend"),
        (name = "stats", description = "Queue, worker and handler statistics"),
        (name = "jobs", description = "Enqueue, inspect and cancel jobs"),
        (name = "dlq", description = "The dead-letter queue"),
        (name = "queues", description = "Flow control: named queues (their depth, pausing and resuming) and the rate and concurrency limiters in use"),
        (name = "scheduler", description = "Interval, cron and one-time schedules"),
        (name = "meta", description = "This document and Prometheus metrics"),
    ),
    security(("bearer" = [])),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
)]
pub(crate) struct BaseDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The OpenAPI 3.1 document of the API: every endpoint, request and response.
///
/// (Served at `/api/v1/jobs/openapi.json` with its links' field names corrected: utoipa 5
/// serialises them in snake case.)
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = super::routes().split_for_parts().1;
    seal_variants(&mut doc, "ScheduleView");
    split_flat_register(&mut doc);
    add_guard_responses(&mut doc);
    doc
}

/// What every endpoint can answer before its handler runs (see `guard` and `read_body`):
/// 403 from the same-site checks of the tokenless API, 408 for a body that did not arrive
/// within the body timeout.
fn add_guard_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    let responses = [
        (
            "403",
            "Refused as cross-site (`forbidden`; without a token only): a state change from \
             another site's page (`Origin`), or a `Host` that is not this machine's loopback \
             with the API's port (DNS rebinding)",
        ),
        ("408", "The request body did not arrive in time (`request_timeout`)"),
    ];
    for item in doc.paths.paths.values_mut() {
        let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for op in ops.into_iter().flatten() {
            for (code, description) in responses {
                op.responses.responses.entry(code.to_owned()).or_insert_with(|| {
                    let body = Content::new(Some(Ref::from_schema_name("ErrorBody")));
                    ResponseBuilder::new()
                        .description(description)
                        .content("application/json", body)
                        .build()
                        .into()
                });
            }
        }
    }
}

/// Marks the variants of an internally tagged enum as closed (`additionalProperties:
/// false`): serde's `deny_unknown_fields` on the enum rejects unknown keys in every variant,
/// but utoipa only carries it over to structs.
fn seal_variants(doc: &mut utoipa::openapi::OpenApi, name: &str) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    let Some(RefOr::T(Schema::OneOf(one_of))) =
        doc.components.as_mut().and_then(|c| c.schemas.get_mut(name))
    else {
        return;
    };
    for item in &mut one_of.items {
        if let RefOr::T(Schema::Object(obj)) = item {
            obj.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
}

/// The flat register body ([`FlatRegisterRequest`](super::FlatRegisterRequest)) as one
/// closed object per `schedule_type`: the derived schema of the struct has every trigger
/// field optional, where the server requires the type's own fields and refuses the other
/// types' (unless null). Each variant fixes `schedule_type`, requires its fields (not
/// null), and allows only null for the others', so that the document accepts exactly the
/// flat bodies the server does.
fn split_flat_register(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
    let Some(schemas) = doc.components.as_mut().map(|c| &mut c.schemas) else {
        return;
    };
    let Some(RefOr::T(Schema::Object(base))) = schemas.get("FlatRegisterRequest").cloned() else {
        return;
    };
    let variants: [(&str, &[&str], &[&str], serde_json::Value); 3] = [
        (
            "interval",
            &["interval_seconds"],
            &["cron_expression", "timezone", "run_at"],
            serde_json::json!({"name": "portfolio_sync", "job_name": "sync_all_portfolios",
                "schedule_type": "interval", "interval_seconds": 300}),
        ),
        (
            "cron",
            &["cron_expression"],
            &["interval_seconds", "run_at"],
            serde_json::json!({"name": "market_open", "job_name": "fetch_market_data",
                "schedule_type": "cron", "cron_expression": "30 9 * * 1-5",
                "timezone": "America/New_York"}),
        ),
        (
            "once",
            &["run_at"],
            &["interval_seconds", "cron_expression", "timezone"],
            serde_json::json!({"name": "year_end", "job_name": "close_books",
                "schedule_type": "once", "run_at": "2030-01-01T00:00:00Z"}),
        ),
    ];
    let mut one_of = OneOfBuilder::new().description(base.description.clone());
    for (kind, own, others, example) in variants {
        let mut v = base.clone();
        v.title = Some(format!("flat {kind}"));
        v.description = None;
        v.example = Some(example);
        let tag = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([kind]))
            .description(Some(format!("`{kind}`")));
        v.properties.insert("schedule_type".into(), tag.build().into());
        for field in own {
            if let Some(RefOr::T(Schema::Object(o))) = v.properties.get_mut(*field)
                && let SchemaType::Array(types) = &o.schema_type
            {
                let types: Vec<Type> =
                    types.iter().filter(|t| **t != Type::Null).cloned().collect();
                o.schema_type = match types.as_slice() {
                    [one] => SchemaType::Type(one.clone()),
                    _ => SchemaType::Array(types),
                };
            }
            v.required.push((*field).to_owned());
        }
        for field in others {
            let null = ObjectBuilder::new()
                .schema_type(Type::Null)
                .description(Some(format!("Not for `{kind}` schedules: absent or null.")));
            v.properties.insert((*field).to_owned(), null.build().into());
        }
        one_of = one_of.item(Schema::Object(v));
    }
    schemas.insert("FlatRegisterRequest".into(), Schema::OneOf(one_of.build()).into());
}

/// The document as JSON, built once.
pub(crate) fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let json = serde_json::to_value(openapi()).and_then(|mut doc| {
            fix_links(&mut doc);
            serde_json::to_string(&doc)
        });
        match json {
            Ok(s) => s,
            Err(e) => {
                // Serialising a document of plain strings and maps cannot fail; answer an
                // empty document rather than panic if it ever does.
                tracing::error!(error = %crate::escape::Escaped(&e), "cannot serialise the OpenAPI document");
                "{}".to_owned()
            }
        }
    })
}

/// utoipa 5 serialises the fields of a Link Object in snake case (`operation_id`), where
/// OpenAPI spells them in camel case (`operationId`); tools then see links without a
/// target. Renames them in every response's `links`.
fn fix_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let responses = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|r| r.values_mut());
    for response in responses {
        let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else {
            continue;
        };
        for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(snake) {
                    link.insert(camel.to_owned(), v);
                }
            }
        }
    }
}

/// The OpenAPI document of this API.
#[utoipa::path(
    get, path = "/api/v1/jobs/openapi.json", operation_id = "get_openapi_document", tag = "meta",
    responses(
        (status = 200, description = "OpenAPI 3.1 document", body = Object, content_type = "application/json"),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn openapi_json() -> Response {
    let mut res = document_json().to_owned().into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_links_use_openapi_field_names() -> Result<(), serde_json::Error> {
        let doc: serde_json::Value = serde_json::from_str(document_json())?;
        let link =
            &doc["paths"]["/api/v1/jobs/enqueue"]["post"]["responses"]["201"]["links"]["GetJob"];
        assert_eq!(link["operationId"], "get_job");
        assert!(link.get("operation_id").is_none());
        assert_eq!(link["parameters"]["job_id"], "$response.body#/job_id");
        let variants = doc["components"]["schemas"]["ScheduleView"]["oneOf"].as_array();
        assert_eq!(variants.map(Vec::len), Some(3));
        for variant in variants.into_iter().flatten() {
            assert_eq!(variant["additionalProperties"], false, "{variant}");
        }
        // The register body: the nested form or the flat one, whose variants each require
        // their own trigger field and allow only null for the others'.
        let forms = doc["components"]["schemas"]["RegisterRequest"]["oneOf"].as_array();
        assert_eq!(forms.map(Vec::len), Some(2));
        let flat = doc["components"]["schemas"]["FlatRegisterRequest"]["oneOf"].as_array();
        let flat = flat.ok_or_else(|| serde::de::Error::custom("FlatRegisterRequest oneOf"))?;
        let kinds: Vec<&serde_json::Value> =
            flat.iter().map(|v| &v["properties"]["schedule_type"]["enum"][0]).collect();
        assert_eq!(kinds, ["interval", "cron", "once"]);
        assert_eq!(flat[1]["additionalProperties"], false);
        assert_eq!(flat[1]["properties"]["cron_expression"]["type"], "string");
        assert_eq!(flat[1]["properties"]["interval_seconds"]["type"], "null");
        let required = flat[1]["required"].as_array().map(Vec::len);
        assert_eq!(required, Some(4), "name, job_name, schedule_type, cron_expression");
        Ok(())
    }
}
