//! payment-service's inputs follow the same rules as booking-service's: unknown
//! or malformed parameters are refused by name, and every error, whichever
//! layer gives it, is problem+json.

use serde_json::Value;

use crate::helpers::*;

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    response.json().await.unwrap()
}

#[tokio::test]
async fn unknown_and_malformed_parameters_are_refused_as_problems() {
    let (queue_url, _dlq) = queue_with_dlq(5, 30).await;
    let app = spawn_app(&new_database_url(), &queue_url, &[]).await;
    let body = problem(app.get_as_operator("/api/payments?limt=5").await, 400).await;
    assert!(body["detail"].as_str().unwrap().contains("limt"), "{body}");
    let body = problem(app.get_as_operator("/api/payments?cursor=abc").await, 400).await;
    assert_eq!(body["errors"][0]["field"], "cursor", "{body}");
    problem(app.get("/api/payments/%FF").await, 400).await;
    problem(app.get("/swagger-ui/nope.js").await, 404).await;
    let redrive = |query: &str| {
        app.client
            .post(format!("{}/api/admin/dlq/redrive{query}", app.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    let body = problem(redrive("?dryRun=yes").await.unwrap(), 400).await;
    assert_eq!(body["type"], "/problems/bad-request", "{body}");
    problem(redrive("?dryrun=true").await.unwrap(), 400).await;
    assert_eq!(redrive("?dryRun=true").await.unwrap().status(), 200);
}
