//! Operator actions: listing every booking needs the service's ADMIN_TOKEN;
//! booking and reading one booking stay open.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn listing_flights_needs_the_operator_token_and_booking_does_not() {
    let app = spawn_app().await;
    let id = app.book_sample().await;
    assert_eq!(app.get(&format!("/api/flights/{id}")).await.status(), 200);

    let anonymous = app.get("/api/flights").await;
    let challenge = anonymous.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let problem = assert_problem(anonymous, 401).await;
    assert_eq!(problem["type"], "/problems/unauthorized");

    let wrong = app
        .client
        .get(format!("{}/api/flights", app.address))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert!(!wrong.headers().contains_key("www-authenticate"));
    assert_problem(wrong, 403).await;

    // Refused before the query is even looked at.
    assert_problem(app.get("/api/flights?limit=0").await, 401).await;

    let page: Value = app
        .get_as_operator("/api/flights")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["id"], id.to_string());
}

#[tokio::test]
async fn without_an_admin_token_the_listing_says_why_it_is_refused() {
    let app = spawn_app_with(&["--admin-token="]).await;
    app.book_sample().await;
    let problem = assert_problem(app.get_as_operator("/api/flights").await, 503).await;
    assert_eq!(problem["type"], "/problems/admin-disabled");
    assert!(
        problem["detail"].as_str().unwrap().contains("ADMIN_TOKEN"),
        "{problem}"
    );
}

#[tokio::test]
async fn the_openapi_document_has_the_bearer_scheme_on_the_listing_only() {
    let spec = booking_service::api::openapi().to_json().unwrap();
    let spec: Value = serde_json::from_str(&spec).unwrap();
    assert_eq!(
        spec["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    let flights = &spec["paths"]["/api/flights"];
    assert_eq!(
        flights["get"]["security"][0]["admin_token"],
        serde_json::json!([])
    );
    for status in ["401", "403", "503"] {
        assert!(
            flights["get"]["responses"][status].is_object(),
            "GET /api/flights documents {status}"
        );
    }
    assert!(flights["post"]["security"].is_null(), "booking stays open");
    assert!(spec["paths"]["/api/flights/{id}"]["get"]["security"].is_null());
}
