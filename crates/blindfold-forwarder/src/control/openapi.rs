//! The OpenAPI document's frame: title, bearer security, the shared error schemas, and
//! the error responses that many operations share, declared once here and named in the
//! handlers' `#[utoipa::path]` attributes.
//!
//! Owns documentation only; the routes and their operations come from the handlers
//! (`router.rs` registers them through `utoipa_axum::routes!`, so the document cannot
//! miss one). Must describe exactly what the handlers answer.

use std::collections::BTreeMap;

use blindfold_control::{ErrorBody, ErrorDetail};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "blindfold control API",
        description = "Drives a keyless media forwarder: conferences, endpoints, their tracks \
                       and subscriptions. Every request but /healthz needs \
                       `Authorization: Bearer TOKEN`. Errors are \
                       `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody, ErrorDetail))
)]
pub(super) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

const UNAUTHORIZED: (u16, &str) = (401, "Missing or wrong token");
const INVALID_ID: (u16, &str) = (400, "Invalid id");
const MALFORMED: (u16, &str) = (400, "Malformed body or invalid id");
const TOO_LARGE: (u16, &str) = (413, "Body too large");
const NOT_JSON: (u16, &str) = (415, "Not JSON");
const NO_CONFERENCE: (u16, &str) = (404, "No such conference");
const NO_ENDPOINT: (u16, &str) = (404, "No such conference or endpoint");

/// `ErrorBody` answers with the given statuses and descriptions.
fn errors(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|&(status, description)| {
            let response = ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

macro_rules! error_set {
    ($($(#[$doc:meta])* $name:ident = [$($e:expr),*];)*) => {$(
        $(#[$doc])*
        pub(super) struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                errors(&[$($e),*])
            }
        }
    )*};
}

error_set! {
    /// An authenticated route without parameters or body.
    AuthErrors = [UNAUTHORIZED];
    /// A route naming a conference, without a body.
    ConferenceErrors = [INVALID_ID, UNAUTHORIZED, NO_CONFERENCE];
    /// A route naming an endpoint, without a body.
    EndpointErrors = [INVALID_ID, UNAUTHORIZED, NO_ENDPOINT];
    /// A route with a JSON body.
    BodyErrors = [MALFORMED, UNAUTHORIZED, TOO_LARGE, NOT_JSON];
    /// A route naming a conference, with a JSON body.
    ConferenceBodyErrors = [MALFORMED, UNAUTHORIZED, NO_CONFERENCE, TOO_LARGE, NOT_JSON];
    /// A route naming an endpoint, with a JSON body.
    EndpointBodyErrors = [MALFORMED, UNAUTHORIZED, NO_ENDPOINT, TOO_LARGE, NOT_JSON];
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_has_bearer_security_and_open_healthz() {
        let doc = serde_json::to_value(super::super::openapi()).unwrap();
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
        assert_eq!(
            doc["paths"]["/healthz"]["get"]["security"],
            serde_json::json!([{}])
        );
        assert!(doc["components"]["schemas"]["ConferenceState"].is_object());
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        // an empty body is accepted for the two POSTs, so their bodies are optional
        let post = &doc["paths"]["/v1/conferences"]["post"]["requestBody"];
        assert_ne!(post["required"], true, "{post}");
        let put = &doc["paths"]["/v1/conferences/{conf}/endpoints/{ep}/tracks"]["put"];
        assert_eq!(put["requestBody"]["required"], true);
        // the shared error sets are expanded in place
        let del = &doc["paths"]["/v1/conferences/{conf}/endpoints/{ep}"]["delete"]["responses"];
        assert_eq!(del["400"]["description"], "Invalid id");
        assert_eq!(
            del["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
    }
}
