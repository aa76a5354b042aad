//! The OpenAPI document states every rule the code enforces, and the committed
//! copy is the generated one.

use serde_json::Value;

fn document() -> Value {
    serde_json::to_value(booking_service::api::openapi()).unwrap()
}

// Defect 5: required fields were typed nullable, and no format, lengths,
// patterns or ranges were stated though the descriptions named them.
#[test]
fn the_document_states_the_rules_the_code_enforces() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let request = &schemas["BookFlightRequest"];
    assert_eq!(request["additionalProperties"], false, "{request}");
    for field in request["required"].as_array().unwrap() {
        let property = &request["properties"][field.as_str().unwrap()];
        assert_eq!(
            property["type"], "string",
            "{field} is a string, not nullable"
        );
    }
    for (field, max) in [
        ("departureAirport", 100),
        ("arrivalAirport", 100),
        ("passengerName", 200),
    ] {
        let property = &request["properties"][field];
        assert_eq!(property["minLength"], 1, "{field}");
        assert_eq!(property["maxLength"], max, "{field}");
        assert_eq!(
            property["pattern"],
            service_kit::json::text_pattern(),
            "{field}"
        );
    }
    for field in ["departureDateTime", "arrivalDateTime"] {
        let property = &request["properties"][field];
        assert_eq!(property["format"], "date-time", "{field}");
        assert_eq!(
            property["pattern"],
            booking_service::domain::DATE_TIME_PATTERN,
            "{field}"
        );
        let description = property["description"].as_str().unwrap();
        assert!(
            description.contains("leap second") && description.contains("9999"),
            "{field}: {description}"
        );
    }
    let fare = &schemas["FareRequest"];
    assert_eq!(fare["additionalProperties"], false, "{fare}");
    assert_eq!(fare["properties"]["amount"]["minimum"], 1);
    assert_eq!(fare["properties"]["amount"]["maximum"], 10_000_000);
    assert_eq!(fare["properties"]["currency"]["pattern"], "^[A-Z]{3}$");

    let listing = &doc["paths"]["/api/flights"]["get"]["parameters"];
    let param = |name: &str| {
        listing
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone()
    };
    assert_eq!(param("limit")["minimum"], 1);
    assert_eq!(param("limit")["maximum"], 100);
    assert_eq!(param("cursor")["format"], "uuid");
    let key = doc["paths"]["/api/flights"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap()["schema"]
        .clone();
    assert_eq!(key["maxLength"], 255, "{key}");
    assert!(key["pattern"].is_string(), "{key}");

    service_kit::testing::assert_every_error_is_documented(&doc);
}
