//! Fuzz-style property tests of request and caller deserialisation: arbitrary JSON never
//! panics the deserialiser and never yields an authenticated caller.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

use agentsafe_core::{Caller, Request};
use proptest::prelude::*;
use serde_json::{Value, json};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

/// Keys of requests and callers, so objects often have the right shape.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "action", "target", "caller", "params", "change_ticket", "correlation_id",
            "trace_id", "id", "roles", "groups", "delegation_chain", "authenticated",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_]{1,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A caller object that claims to be authenticated, with arbitrary other members.
fn claiming_caller() -> impl Strategy<Value = Value> {
    (
        any::<String>(),
        prop::collection::vec(any::<String>(), 0..3),
        prop::collection::btree_map(key(), json_value(), 0..3),
    )
        .prop_map(|(id, roles, extra)| {
            let mut c = json!({ "id": id, "roles": roles });
            for (k, v) in extra {
                c[k] = v;
            }
            c["authenticated"] = json!(true);
            c
        })
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_json_is_never_an_authenticated_caller(v in json_value()) {
        if let Ok(c) = serde_json::from_value::<Caller>(v.clone()) {
            prop_assert!(!c.authenticated);
        }
        if let Ok(r) = serde_json::from_value::<Request>(v.clone()) {
            prop_assert!(!r.caller.authenticated);
        }
        let text = v.to_string();
        if let Ok(r) = serde_json::from_str::<Request>(&text) {
            prop_assert!(!r.caller.authenticated);
        }
    }

    #[test]
    fn a_caller_claiming_authentication_is_read_as_unauthenticated(caller in claiming_caller(), params in json_value()) {
        if let Ok(c) = serde_json::from_value::<Caller>(caller.clone()) {
            prop_assert!(!c.authenticated);
        }
        let request = json!({ "action": "a", "target": "t", "caller": caller, "params": params });
        if let Ok(r) = serde_json::from_value::<Request>(request.clone()) {
            prop_assert!(!r.caller.authenticated);
        }
        if let Ok(r) = serde_json::from_slice::<Request>(&serde_json::to_vec(&request).unwrap()) {
            prop_assert!(!r.caller.authenticated);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_request_parsing(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(r) = serde_json::from_slice::<Request>(&bytes) {
            prop_assert!(!r.caller.authenticated);
        }
    }
}

#[test]
fn a_well_formed_claiming_request_parses_unauthenticated() {
    let r: Request = serde_json::from_value(json!({
        "action": "a", "target": "t", "caller": { "id": "m", "authenticated": true }
    }))
    .unwrap();
    assert!(!r.caller.authenticated);
}
