//! RFC 8785 (JSON Canonicalization Scheme) encoding: the only bytes agentsafe hashes or signs.

use serde::Serialize;

/// Serializes `value` as RFC 8785 canonical JSON bytes (sorted keys, no white space,
/// ECMAScript number formatting).
///
/// # Errors
/// When `value` cannot be represented as JSON (for example a map with non-string keys
/// or a non-finite float).
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json_canonicalizer::to_vec(value)
}

/// Like [`to_vec`], as a `String`.
///
/// # Errors
/// As [`to_vec`].
pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json_canonicalizer::to_string(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8785_known_answers() {
        // From RFC 8785 section 3.2.2 and its number examples.
        let v: serde_json::Value = serde_json::from_str(
            r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],
                "string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#,
        )
        .unwrap();
        assert_eq!(
            to_string(&v).unwrap(),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }
}
