//! payment-service's OpenAPI document: committed, and stating its rules.

#[test]
fn committed_openapi_json_matches_the_code() {
    let generated = payment_service::api::openapi().to_pretty_json().unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "crates/payment-service/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test -p payment-service --test api openapi`"
    );
}

#[test]
fn the_document_states_the_rules_the_code_enforces() {
    let doc = serde_json::to_value(payment_service::api::openapi()).unwrap();
    let listing = &doc["paths"]["/api/payments"]["get"]["parameters"];
    let cursor = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cursor")
        .unwrap();
    assert_eq!(cursor["schema"]["format"], "uuid", "{cursor}");
    let id = &doc["paths"]["/api/payments/{flightId}"]["get"]["parameters"][0]["schema"];
    assert_eq!(id["format"], "uuid", "{id}");
    let redrive = &doc["paths"]["/api/admin/dlq/redrive"]["post"];
    assert_eq!(redrive["security"][0]["admin_token"], serde_json::json!([]));
    let dry_run = &redrive["parameters"][0];
    assert_eq!(dry_run["name"], "dryRun");
    assert_eq!(dry_run["in"], "query", "{dry_run}");
    assert_eq!(dry_run["schema"]["type"], "boolean", "{dry_run}");
    service_kit::testing::assert_every_error_is_documented(&doc);
}
