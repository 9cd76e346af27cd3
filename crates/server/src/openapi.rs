//! The OpenAPI description's frame: title, security schemes, tags. The paths
//! are collected from the handlers' `#[utoipa::path]` annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Belfry",
        description = "Belfry, a self-hosted notification center. Producers send with a secret key \
(`Authorization: Bearer bfy_sk_…`, scopes `send` or `admin`); browsers read one user's inbox with \
a user token under `/v1/me/...`. Every `/v1/me/...` inbox endpoint also exists as \
`/v1/users/{user_id}/...` for admin keys. Errors are `application/problem+json` with a stable \
`code`. Request bodies are JSON and unknown fields are refused (422) so that typos are reported.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(crate::error::Problem, belfry_core::FieldError)),
    tags(
        (name = "notifications", description = "Sending (secret key)"),
        (name = "inbox", description = "One user's inbox (user token)"),
        (name = "users", description = "Users, groups and user tokens (admin key)"),
        (name = "subscriptions", description = "Who follows an entity (send key; listings need admin)"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "secret_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A secret key, bfy_sk_…"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A user token from POST /v1/users/{id}/tokens"))
                    .build(),
            ),
        );
    }
}

/// The document before paths are added.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
