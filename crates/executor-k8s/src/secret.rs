//! get-secret's report: key names and sizes; values only when `reveal_values` is true,
//! and then under [`VALUES_KEY`].
//!
//! # Security
//! The values go under the output key `secret_values`: the runner redacts every output
//! key that looks secret (and the whole output of an action tagged `secrets`), so a value
//! can never reach an audit record. The summary never holds a value.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Map, Value, json};

use agentsafe_core::ExecutionReport;

use crate::K8sError;

/// The output key holding revealed values (redacted by the runner before recording).
pub const VALUES_KEY: &str = "secret_values";

fn decoded(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(bytes)}),
    }
}

/// The report of get-secret.
///
/// # Errors
/// `NotFound` when a key is asked for and the Secret lacks it.
pub(crate) fn read(
    ns: &str,
    name: &str,
    s: &Secret,
    key: Option<&str>,
    reveal: bool,
) -> Result<ExecutionReport, K8sError> {
    let data = s.data.clone().unwrap_or_default();
    if let Some(key) = key
        && !data.contains_key(key)
    {
        return Err(K8sError::NotFound(format!(
            "key `{key}` of secret {ns}/{name}"
        )));
    }
    let selected: Vec<(&String, &k8s_openapi::ByteString)> = data
        .iter()
        .filter(|(k, _)| key.is_none_or(|want| want == k.as_str()))
        .collect();
    let keys: Vec<Value> = selected
        .iter()
        .map(|(k, v)| json!({"name": k, "size": v.0.len()}))
        .collect();
    let mut out = Map::new();
    out.insert("type".into(), json!(s.type_));
    out.insert("keys".into(), Value::Array(keys));
    out.insert("revealed".into(), json!(reveal));
    if reveal {
        let values: Map<String, Value> = selected
            .iter()
            .map(|(k, v)| ((*k).clone(), decoded(&v.0)))
            .collect();
        out.insert(VALUES_KEY.into(), Value::Object(values));
    }
    let what = match key {
        Some(k) => format!("key `{k}`"),
        None => format!("{} key(s)", selected.len()),
    };
    Ok(ExecutionReport {
        summary: format!(
            "read {what} of secret {ns}/{name}{}",
            if reveal {
                " with values"
            } else {
                " (names and sizes only)"
            }
        ),
        output: Value::Object(out),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use super::*;
    use std::collections::BTreeMap;

    fn secret() -> Secret {
        Secret {
            data: Some(BTreeMap::from([
                (
                    "password".to_owned(),
                    k8s_openapi::ByteString(b"hunter2".to_vec()),
                ),
                ("blob".to_owned(), k8s_openapi::ByteString(vec![0xff, 0x00])),
            ])),
            type_: Some("Opaque".into()),
            ..Secret::default()
        }
    }

    #[test]
    fn values_only_when_revealed_and_only_under_the_redacted_key() {
        let r = read("p", "s", &secret(), None, false).unwrap();
        let text = serde_json::to_string(&r.output).unwrap();
        assert!(
            !text.contains("hunter2") && !r.summary.contains("hunter2"),
            "{text}"
        );
        assert_eq!(
            r.output["keys"],
            json!([{"name": "blob", "size": 2}, {"name": "password", "size": 7}])
        );
        let r = read("p", "s", &secret(), Some("password"), true).unwrap();
        assert_eq!(r.output[VALUES_KEY], json!({"password": "hunter2"}));
        assert!(!r.summary.contains("hunter2"));
        let mut without = r.output.clone();
        without.as_object_mut().unwrap().remove(VALUES_KEY);
        assert!(
            !without.to_string().contains("hunter2"),
            "values appear only under {VALUES_KEY}"
        );
        let r = read("p", "s", &secret(), Some("blob"), true).unwrap();
        assert_eq!(r.output[VALUES_KEY]["blob"], json!({"base64": "/wA="}));
        assert!(matches!(
            read("p", "s", &secret(), Some("nope"), false),
            Err(K8sError::NotFound(_))
        ));
    }
}
