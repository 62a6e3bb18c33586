//! Property tests of `validate_params` over every shipped action: it never panics on
//! arbitrary JSON params, and what it accepts validates again to itself.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::path::Path;
use std::sync::LazyLock;

use agentsafe_registry::{ActionDef, ItemType, ParamDef, ParamType, Params, Registry};
use proptest::prelude::*;
use serde_json::{Value, json};

static CATALOGUE: LazyLock<Registry> = LazyLock::new(|| {
    Registry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../actions")).unwrap()
});

/// A known-good string for a param of the catalogue, by param name.
fn good_string(name: &str) -> &'static str {
    match name {
        "namespace" | "allow_from_namespaces" => "shop",
        "name" => "web",
        "pod" => "web-1",
        "container" => "app",
        "configmap" => "cfg",
        "secret" => "db-credentials",
        "node" => "node-1.example.com",
        "key" => "app.properties",
        "image" => "registry.example.com/shop/web:1.2.3",
        "command" => "ls",
        "policy_types" => "Ingress",
        "account" => "123456789012",
        "region" => "eu-west-1",
        "instance_id" => "i-0123456789abcdef0",
        "cluster" => "prod",
        "service" => "api",
        "task_id" => "0123456789abcdef0123456789abcdef",
        "task_definition" => "api:7",
        "function_name" => "resize_images",
        "bucket" => "shop-assets",
        "role_name" => "app-role",
        "policy_arn" => "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "policy" => r#"{"Version":"2012-10-17","Statement":[]}"#,
        "invocation_type" => "Event",
        _ => "value",
    }
}

fn good_item(param: &ParamDef, item: ItemType) -> Value {
    match item {
        ItemType::String => json!(good_string(param.name())),
        ItemType::Integer | ItemType::Number => {
            json!(param.constraints().min().map_or(1.0, |b| b.as_f64()) as i64)
        }
        ItemType::Boolean => json!(true),
        ItemType::Object => json!({}),
    }
}

/// Values of `param` that its constraints accept.
fn good_values(param: &ParamDef) -> Vec<Value> {
    let c = param.constraints();
    let mut values: Vec<Value> = param.default().cloned().into_iter().collect();
    match param.param_type() {
        ParamType::String => values.push(json!(good_string(param.name()))),
        ParamType::Integer => {
            for bound in [c.min(), c.max()].into_iter().flatten() {
                values.push(json!(bound.as_f64() as i64));
            }
            values.push(json!(c.min().map_or(1.0, |b| b.as_f64()) as i64 + 1));
        }
        ParamType::Number => values.push(json!(c.min().map_or(0.5, |b| b.as_f64()))),
        ParamType::Boolean => values.extend([json!(true), json!(false)]),
        ParamType::Object => values.extend([json!({}), json!({"app": "web"})]),
        ParamType::Array(item) => {
            values.push(json!([good_item(param, item)]));
            if c.min_length().unwrap_or(0) == 0 {
                values.push(json!([]));
            }
        }
    }
    values
}

/// Arbitrary JSON, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("json numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        "[-a-z0-9./ ;*]{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{0,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Params for `action`: each declared param omitted, good, or arbitrary; sometimes extra keys.
fn params_for(action: &'static ActionDef) -> impl Strategy<Value = Params> {
    let per_param: Vec<BoxedStrategy<Option<Value>>> = action
        .params()
        .iter()
        .map(|p| {
            prop_oneof![
                2 => Just(None),
                6 => prop::sample::select(good_values(p)).prop_map(Some),
                2 => any_json().prop_map(Some),
            ]
            .boxed()
        })
        .collect();
    let extra = prop::collection::btree_map("[a-z_]{1,8}", any_json(), 0..3);
    (per_param, extra, prop::bool::weighted(0.1)).prop_map(move |(values, extra, with_extra)| {
        let mut params = Params::new();
        for (p, v) in action.params().iter().zip(values) {
            if let Some(v) = v {
                params.insert(p.name().to_owned(), v);
            }
        }
        if with_extra {
            params.extend(extra);
        }
        params
    })
}

fn action_and_params() -> impl Strategy<Value = (&'static ActionDef, Params)> {
    let actions: Vec<&'static ActionDef> = CATALOGUE.actions().collect();
    prop::sample::select(actions).prop_flat_map(|a| (Just(a), params_for(a)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn validate_params_is_total_and_idempotent((action, params) in action_and_params()) {
        match action.validate_params(&params) {
            Ok(out) => {
                // Only declared params, every required one present, given values kept.
                for key in out.keys() {
                    prop_assert!(action.param(key).is_some(), "undeclared `{key}` in output");
                }
                for p in action.params().iter().filter(|p| p.required()) {
                    prop_assert!(out.contains_key(p.name()), "required `{}` missing", p.name());
                }
                for (k, v) in &params {
                    prop_assert_eq!(out.get(k), Some(v));
                }
                prop_assert_eq!(action.validate_params(&out), Ok(out.clone()));
            }
            Err(errors) => prop_assert!(!errors.is_empty()),
        }
    }
}

/// The generator above only exercises idempotence if good values really are good.
#[test]
fn good_values_are_accepted_for_every_action() {
    for action in CATALOGUE.actions() {
        for p in action.params() {
            for value in good_values(p) {
                let mut params = Params::new();
                for q in action.params() {
                    params.insert(q.name().to_owned(), good_values(q).remove(0));
                }
                params.insert(p.name().to_owned(), value.clone());
                let result = action.validate_params(&params);
                assert!(
                    result.is_ok(),
                    "{}.{} = {value}: {result:?}",
                    action.name(),
                    p.name()
                );
            }
        }
    }
}
