//! `schemas/openapi.yaml` held to the endpoint table: every route served is documented,
//! every documented route is served, and the limits the document states are the code's.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{agents, endpoints, operations};
use crate::oauth::terms;

const DOCUMENT: &str = include_str!("../../schemas/openapi.yaml");

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_saphyr::from_str(DOCUMENT).unwrap_or_else(|err| panic!("schemas/openapi.yaml: {err}"))
}

/// Every operation in the document: (METHOD, path, operation object).
fn documented(document: &Value) -> Vec<(String, String, &Value)> {
    let paths = document["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("the document has no paths"));
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS.iter().filter_map(move |method| {
                item.get(*method)
                    .map(|operation| (method.to_uppercase(), path.clone(), operation))
            })
        })
        .collect()
}

#[test]
fn the_document_describes_exactly_the_endpoints_served() {
    let document = document();
    let table = endpoints();
    let served: BTreeSet<(String, String)> = table
        .iter()
        .map(|e| (e.method.as_str().to_owned(), e.path.to_owned()))
        .collect();
    assert_eq!(
        served.len(),
        table.len(),
        "the endpoint table lists a route twice"
    );
    let described: BTreeSet<(String, String)> = documented(&document)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let undocumented: Vec<_> = served.difference(&described).collect();
    let unserved: Vec<_> = described.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not in schemas/openapi.yaml: {undocumented:?}\n\
         in schemas/openapi.yaml but not served: {unserved:?}"
    );
}

#[test]
fn every_operation_has_an_id_a_success_and_a_client_error() {
    let document = document();
    let mut ids = BTreeSet::new();
    for (method, path, operation) in documented(&document) {
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{method} {path} has no operationId");
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        let statuses: Vec<&String> = operation["responses"]
            .as_object()
            .map(|responses| responses.keys().collect())
            .unwrap_or_default();
        // A redirect (the start of an OAuth flow) is that operation's success.
        for class in ['2', '4'] {
            assert!(
                statuses.iter().any(|status| status.starts_with(class)
                    || (class == '2' && (*status == "302" || *status == "303"))),
                "{method} {path} documents no {class}xx response: {statuses:?}"
            );
        }
    }
}

#[test]
fn the_document_states_the_code_s_version_and_limits() {
    let document = document();
    assert_eq!(
        document["info"]["version"].as_str(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    for endpoint in endpoints() {
        let method = endpoint.method.as_str().to_lowercase();
        let body = &document["paths"][endpoint.path][method.as_str()]["requestBody"];
        if !body.is_null() {
            assert_eq!(
                body["x-body-bytes-max"].as_u64(),
                u64::try_from(endpoint.body_bytes_max).ok(),
                "{method} {}: x-body-bytes-max",
                endpoint.path
            );
        }
    }
    let schemas = "/components/schemas";
    let limits: [(&str, u64); 19] = [
        (
            "NewUser/properties/email/maxLength",
            crate::people::identity::EMAIL_BYTES_MAX as u64,
        ),
        (
            "NewUser/properties/name/maxLength",
            crate::people::identity::NAME_BYTES_MAX as u64,
        ),
        (
            "NewAgent/properties/name/maxLength",
            agents::NAME_BYTES_MAX as u64,
        ),
        ("Scopes/maxItems", agents::SCOPES_MAX as u64),
        (
            "ClientMetadata/properties/client_name/maxLength",
            agents::NAME_BYTES_MAX as u64,
        ),
        (
            "ClientMetadata/properties/redirect_uris/maxItems",
            agents::URIS_MAX as u64,
        ),
        (
            "ClientMetadata/properties/redirect_uris/items/maxLength",
            agents::URI_BYTES_MAX as u64,
        ),
        ("ScopeToken/maxLength", agents::SCOPE_BYTES_MAX as u64),
        (
            "AgentReview/properties/note/maxLength",
            agents::NOTE_BYTES_MAX as u64,
        ),
        (
            "AgentPolicy/properties/max_ttl_seconds/maximum",
            agents::POLICY_TTL_SECONDS_MAX,
        ),
        (
            "AgentPolicy/properties/max_delegation_depth/maximum",
            u64::from(agents::POLICY_DELEGATION_DEPTH_MAX),
        ),
        (
            "AgentPolicy/properties/max_operations/maximum",
            writ_schemas::INTEGER_MAGNITUDE_MAX,
        ),
        (
            "Operation/properties/operation/maxLength",
            operations::FIELD_BYTES_MAX as u64,
        ),
        (
            "Operation/properties/resource/maxLength",
            operations::FIELD_BYTES_MAX as u64,
        ),
        (
            "TokenRequest/properties/task_id/maxLength",
            terms::TASK_ID_BYTES_MAX as u64,
        ),
        (
            "TokenRequest/properties/intent_description/maxLength",
            terms::INTENT_BYTES_MAX as u64,
        ),
        (
            "TokenRequest/properties/expires_in/maximum",
            terms::EXPIRES_IN_SECONDS_ABSURD,
        ),
        (
            "TokenRequest/properties/max_operations/maximum",
            writ_schemas::INTEGER_MAGNITUDE_MAX,
        ),
        (
            "/components/parameters/IdempotencyKey/schema/maxLength",
            operations::FIELD_BYTES_MAX as u64,
        ),
    ];
    // Limits stated in prose: the sentence must carry the code's number.
    let prose = [
        (
            "/paths/~1api~1v1~1users~1{id}~1api-keys/post/description",
            crate::decide::API_KEYS_PER_USER_MAX,
        ),
        (
            "/paths/~1api~1v1~1agents~1{client_id}~1delegations/post/description",
            crate::decide::DELEGATIONS_PER_USER_MAX,
        ),
    ];
    for (pointer, limit) in prose {
        let text = document.pointer(pointer).and_then(Value::as_str);
        assert!(
            text.is_some_and(|text| text.contains(&format!("up to {limit} "))),
            "schemas/openapi.yaml {pointer} must say `up to {limit} `: {text:?}"
        );
    }
    for (pointer, limit) in limits {
        let pointer = if pointer.starts_with('/') {
            pointer.to_owned()
        } else {
            format!("{schemas}/{pointer}")
        };
        assert_eq!(
            document.pointer(&pointer).and_then(Value::as_u64),
            Some(limit),
            "schemas/openapi.yaml {pointer}"
        );
    }
}

/// Each operation states the role an admin credential needs (`x-admin-role`), the same as
/// the endpoint table declares; each that needs `admin` and takes admin credentials (or a
/// caller that may be one) documents the 403 `insufficient_role` an auditor gets.
#[test]
fn the_document_states_each_endpoint_s_role_and_the_auditor_s_refusal() {
    let document = document();
    let takes_no_admin_credential = ["/api/v1/operations", "/api/v1/proxy/{server_id}/tools"];
    for endpoint in endpoints() {
        let method = endpoint.method.as_str().to_lowercase();
        let operation = &document["paths"][endpoint.path][method.as_str()];
        let at = format!("{method} {}", endpoint.path);
        assert_eq!(
            operation["x-admin-role"].as_str(),
            Some(endpoint.role.as_str()),
            "{at}: x-admin-role"
        );
        let management = endpoint.path.starts_with("/api/v1/")
            && !takes_no_admin_credential.contains(&endpoint.path);
        if endpoint.role == writ_schemas::AdminRole::Admin
            && (management || endpoint.path == "/oauth/register")
        {
            let refusal = serde_json::to_string(&operation["responses"]["403"]).unwrap_or_default();
            assert!(
                refusal.contains("InsufficientRole") || refusal.contains("insufficient_role"),
                "{at} documents no 403 insufficient_role: {refusal}"
            );
        }
    }
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["NewAdminCredential"]["properties"]["name"]["maxLength"].as_u64(),
        Some(crate::decide::ADMIN_CREDENTIAL_NAME_CHARS_MAX as u64)
    );
    let described = document
        .pointer("/paths/~1api~1v1~1admin~1credentials/post/description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        described.contains(&format!("up to {} ", crate::decide::ADMIN_CREDENTIALS_MAX)),
        "{described}"
    );
}
