//! Checking request params against an action's declared types and constraints.

use std::fmt;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::Params;
use crate::model::{ActionDef, Bound, Constraints, ParamDef, ParamType};

/// How many characters of a value an error message shows.
const SHOWN_CHARS: usize = 64;

/// One problem with one request param.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamError {
    /// The param, with an item index for arrays (`command[2]`).
    pub param: String,
    /// What is wrong: lowercase, values in backticks (never the value of a sensitive param).
    pub message: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.param, self.message)
    }
}

impl std::error::Error for ParamError {}

impl ActionDef {
    /// Checks `params` against the declared types and constraints, applies defaults and
    /// rejects undeclared params.
    ///
    /// Every check always runs, also when `params` is empty, and every problem is reported.
    ///
    /// # Errors
    /// Every problem found: a missing required param, an undeclared param, a value of the
    /// wrong type or one that breaks a constraint.
    ///
    /// # Security
    /// Messages never show the value of a sensitive param.
    pub fn validate_params(&self, params: &Params) -> Result<Params, Vec<ParamError>> {
        self.validate_params_owned(params.clone())
            .map_err(|(_, errors)| errors)
    }

    /// [`ActionDef::validate_params`] on params the caller owns: checks them in place and
    /// inserts defaults, without building a second map (this is on the path of every
    /// decision). On failure the params come back unchanged with every problem.
    ///
    /// # Security
    /// Messages never show the value of a sensitive param.
    pub fn validate_params_owned(
        &self,
        params: Params,
    ) -> Result<Params, (Params, Vec<ParamError>)> {
        self.validate_params_bound(params, false)
    }

    /// [`ActionDef::validate_params_owned`] where the values of target-bound params
    /// (`target_attr`) are known to be valid already, because the caller checked the
    /// target's attributes with [`ParamDef::check_value`] and bound them itself: those
    /// values are not checked again. Every other check runs as usual.
    pub fn validate_params_bound(
        &self,
        mut params: Params,
        bound_checked: bool,
    ) -> Result<Params, (Params, Vec<ParamError>)> {
        let mut errors = Vec::new();
        let mut defaults: Vec<&ParamDef> = Vec::new();
        for def in &self.params {
            match params.get(&def.name) {
                Some(_) if bound_checked && def.target_attr.is_some() => {}
                Some(value) => {
                    def.check(value, &mut errors);
                }
                None if def.default.is_some() => defaults.push(def),
                None if def.required => errors.push(ParamError {
                    param: def.name.clone(),
                    message: "missing required param".to_owned(),
                }),
                None => {}
            }
        }
        for name in params.keys() {
            if self.param(name).is_none() {
                errors.push(ParamError {
                    param: name.clone(),
                    message: format!("not a param of action `{}`", self.name),
                });
            }
        }
        if !errors.is_empty() {
            return Err((params, errors));
        }
        for def in defaults {
            if let Some(default) = &def.default {
                params.insert(def.name.clone(), default.clone());
            }
        }
        Ok(params)
    }
}

impl ParamDef {
    /// Checks one value; pushes every problem and says whether there was none.
    /// Checks one value against this param's type and constraints.
    ///
    /// # Errors
    /// Every problem with the value.
    pub fn check_value(&self, value: &Value) -> Result<(), Vec<ParamError>> {
        let mut errors = Vec::new();
        if self.check(value, &mut errors) {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub(crate) fn check(&self, value: &Value, errors: &mut Vec<ParamError>) -> bool {
        let before = errors.len();
        let mut report = Reporter {
            param: &self.name,
            index: None,
            sensitive: self.sensitive,
            errors,
        };
        match self.param_type {
            ParamType::Array(item) => match value.as_array() {
                Some(items) => {
                    report.items(items.len(), &self.constraints);
                    for (i, v) in items.iter().enumerate() {
                        report.index = Some(i);
                        check_scalar(
                            item.as_param_type(),
                            v,
                            &self.constraints,
                            false,
                            &mut report,
                        );
                    }
                }
                None => report.wrong_type(&self.param_type, value),
            },
            other => check_scalar(other, value, &self.constraints, true, &mut report),
        }
        errors.len() == before
    }
}

/// Checks a non-array value (or one array item) of type `ty`. `lengths` says whether
/// `min_length`/`max_length` apply to the value (for array items they count items instead).
fn check_scalar(
    ty: ParamType,
    value: &Value,
    c: &Constraints,
    lengths: bool,
    report: &mut Reporter<'_, '_>,
) {
    match (ty, value) {
        (ParamType::String, Value::String(s)) => {
            if lengths {
                report.string_length(s, c);
            }
            if let Some(p) = &c.pattern
                && !p.is_match(s)
            {
                report.push(format_args!("must match `{}`", p.source), Some(value));
            }
        }
        (ParamType::Integer, Value::Number(n)) if !n.is_f64() => {
            let v = n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .unwrap_or_default();
            if let Some(Bound::Integer(min)) = c.min
                && v < i128::from(min)
            {
                report.push(format_args!("must be at least {min}"), Some(value));
            }
            if let Some(Bound::Integer(max)) = c.max
                && v > i128::from(max)
            {
                report.push(format_args!("must be at most {max}"), Some(value));
            }
        }
        (ParamType::Number, Value::Number(n)) => {
            // JSON numbers are always finite.
            let v = n.as_f64().unwrap_or_default();
            if let Some(min) = c.min
                && v < min.as_f64()
            {
                report.push(format_args!("must be at least {min}"), Some(value));
            }
            if let Some(max) = c.max
                && v > max.as_f64()
            {
                report.push(format_args!("must be at most {max}"), Some(value));
            }
        }
        (ParamType::Boolean, Value::Bool(_)) | (ParamType::Object, Value::Object(_)) => {}
        _ => {
            report.wrong_type(&ty, value);
            return;
        }
    }
    if let Some(allowed) = &c.enum_values
        && !allowed.iter().any(|a| same_value(a, value))
    {
        let mut list = String::new();
        for (i, a) in allowed.iter().enumerate() {
            if i > 0 {
                list.push_str(", ");
            }
            let _ = write!(list, "`{}`", Shown(a));
        }
        report.push(format_args!("must be one of {list}"), Some(value));
    }
}

/// Equality of JSON values, numbers compared by value (`3` equals `3.0`).
pub(crate) fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                x.as_f64() == y.as_f64()
            } else {
                x == y
            }
        }
        _ => a == b,
    }
}

/// The JSON kind of a value, for type errors.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

struct Reporter<'p, 'e> {
    param: &'p str,
    index: Option<usize>,
    sensitive: bool,
    errors: &'e mut Vec<ParamError>,
}

impl Reporter<'_, '_> {
    fn push(&mut self, message: fmt::Arguments<'_>, got: Option<&Value>) {
        let param = match self.index {
            Some(i) => format!("{}[{i}]", self.param),
            None => self.param.to_owned(),
        };
        let mut message = message.to_string();
        if let Some(v) = got
            && !self.sensitive
        {
            let _ = write!(message, ", got `{}`", Shown(v));
        }
        self.errors.push(ParamError { param, message });
    }

    fn wrong_type(&mut self, expected: &ParamType, value: &Value) {
        let kind = kind(value);
        if self.sensitive || value.is_null() {
            self.push(format_args!("expected {expected}, got {kind}"), None);
        } else {
            self.push(
                format_args!("expected {expected}, got {kind} `{}`", Json(value)),
                None,
            );
        }
    }

    fn string_length(&mut self, s: &str, c: &Constraints) {
        // Counting characters is only needed when the byte length does not decide.
        if let Some(max) = c.max_length
            && (s.len() as u64) > max
        {
            let n = s.chars().count() as u64;
            if n > max {
                self.push(
                    format_args!("must be at most {max} characters long, got {n}"),
                    None,
                );
            }
        }
        if let Some(min) = c.min_length {
            let bytes = s.len() as u64;
            // A character takes at most four bytes.
            if bytes < min || (bytes < min.saturating_mul(4) && (s.chars().count() as u64) < min) {
                let n = s.chars().count();
                self.push(
                    format_args!("must be at least {min} characters long, got {n}"),
                    None,
                );
            }
        }
    }

    fn items(&mut self, n: usize, c: &Constraints) {
        let n = n as u64;
        let unit = |bound: u64| if bound == 1 { "item" } else { "items" };
        if let Some(min) = c.min_length
            && n < min
        {
            let unit = unit(min);
            self.push(
                format_args!("must have at least {min} {unit}, got {n}"),
                None,
            );
        }
        if let Some(max) = c.max_length
            && n > max
        {
            let unit = unit(max);
            self.push(
                format_args!("must have at most {max} {unit}, got {n}"),
                None,
            );
        }
    }
}

/// A value as compact JSON, cut after [`SHOWN_CHARS`] characters.
struct Json<'a>(&'a Value);

impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::String(s) => {
                f.write_str("\"")?;
                shorten(f, s)?;
                f.write_str("\"")
            }
            Value::Array(_) | Value::Object(_) => {
                let text = self.0.to_string();
                shorten(f, &text)
            }
            other => write!(f, "{other}"),
        }
    }
}

/// A value for "got `...`": strings without quotes, the rest as JSON; shortened.
struct Shown<'a>(&'a Value);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::String(s) => shorten(f, s),
            other => Json(other).fmt(f),
        }
    }
}

/// Writes `s` with control characters escaped, cut after [`SHOWN_CHARS`] characters.
fn shorten(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for (i, c) in s.chars().enumerate() {
        if i == SHOWN_CHARS {
            return f.write_str("…");
        }
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            f.write_char(c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{ActionDef, Params, Registry};

    const ACTION: &str = r#"
name = "demo"
version = "1.0.0"
description = "Every param type"
risk = "medium"
target_types = ["t"]
reversible = false

[[params]]
name = "namespace"
type = "string"
constraints = { pattern = '[a-z0-9]([-a-z0-9]*[a-z0-9])?', max_length = 63 }

[[params]]
name = "replicas"
type = "integer"
constraints = { min = 0, max = 500 }

[[params]]
name = "ratio"
type = "number"
required = false
constraints = { min = 0, max = 1.5 }

[[params]]
name = "mode"
type = "string"
default = "fast"
constraints = { enum = ["fast", "slow"] }

[[params]]
name = "dry_run"
type = "boolean"
required = false
default = false

[[params]]
name = "command"
type = "array"
items = "string"
required = false
constraints = { min_length = 1, max_length = 3, pattern = '[a-z]+' }

[[params]]
name = "ports"
type = "array"
items = "integer"
default = [80]
constraints = { min = 1, max = 65535 }

[[params]]
name = "labels"
type = "object"
required = false

[[params]]
name = "token"
type = "string"
required = false
sensitive = true
constraints = { pattern = '[a-f0-9]{8}' }
"#;

    fn demo() -> Registry {
        Registry::from_sources(&[("demo.toml", ACTION)]).unwrap()
    }

    fn action(registry: &Registry) -> &ActionDef {
        registry.get("demo").unwrap()
    }

    fn params(value: serde_json::Value) -> Params {
        value.as_object().unwrap().clone()
    }

    /// The errors as `param: message` lines.
    fn errors(value: serde_json::Value) -> Vec<String> {
        let registry = demo();
        action(&registry)
            .validate_params(&params(value))
            .unwrap_err()
            .iter()
            .map(|e| format!("{}: {}", e.param, e.message))
            .collect()
    }

    #[test]
    fn valid_params_pass_and_defaults_are_applied() {
        let registry = demo();
        let out = action(&registry)
            .validate_params(&params(json!({"namespace": "shop", "replicas": 3})))
            .unwrap();
        assert_eq!(
            serde_json::Value::Object(out),
            json!({"namespace": "shop", "replicas": 3, "mode": "fast", "dry_run": false, "ports": [80]})
        );
    }

    #[test]
    fn given_values_win_over_defaults() {
        let registry = demo();
        let input = params(json!({
            "namespace": "shop", "replicas": 0, "ratio": 1.5, "mode": "slow", "dry_run": true,
            "command": ["abcdefgh"], "ports": [1, 65535], "labels": {"app": "web"}, "token": "deadbeef"
        }));
        assert_eq!(action(&registry).validate_params(&input).unwrap(), input);
    }

    #[test]
    fn missing_required_params_are_reported_for_empty_params() {
        assert_eq!(
            errors(json!({})),
            [
                "namespace: missing required param",
                "replicas: missing required param"
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        assert_eq!(
            errors(json!({
                "namespace": "Shop", "replicas": 900, "ratio": -1, "mode": "medium",
                "command": [], "ports": [0, 80, "http"], "labels": [], "extra": 1, "other": "x"
            })),
            [
                "namespace: must match `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, got `Shop`",
                "replicas: must be at most 500, got `900`",
                "ratio: must be at least 0, got `-1`",
                "mode: must be one of `fast`, `slow`, got `medium`",
                "command: must have at least 1 item, got 0",
                "ports[0]: must be at least 1, got `0`",
                "ports[2]: expected integer, got string `\"http\"`",
                "labels: expected object, got array `[]`",
                "extra: not a param of action `demo`",
                "other: not a param of action `demo`",
            ]
        );
    }

    #[test]
    fn undeclared_params_are_rejected() {
        let registry = demo();
        let err = action(&registry)
            .validate_params(&params(
                json!({"namespace": "a", "replicas": 1, "force": true}),
            ))
            .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].to_string(), "`force`: not a param of action `demo`");
    }

    #[test]
    fn patterns_must_match_the_whole_value() {
        for bad in [
            "x --all",
            "../etc",
            "*",
            "-n",
            "a b",
            "kube-system; rm",
            "a\nb",
            "",
            "a-",
        ] {
            let errs = errors(json!({"namespace": bad, "replicas": 1}));
            assert_eq!(errs.len(), 1, "{bad:?}: {errs:?}");
            assert!(
                errs[0].starts_with("namespace: must match"),
                "{bad:?}: {errs:?}"
            );
        }
        let errs = errors(json!({"namespace": "a".repeat(64), "replicas": 1}));
        assert_eq!(
            errs,
            ["namespace: must be at most 63 characters long, got 64"]
        );
    }

    #[test]
    fn integers_are_strict_and_numbers_are_not() {
        assert_eq!(
            errors(json!({"namespace": "a", "replicas": 3.0})),
            ["replicas: expected integer, got number `3.0`"]
        );
        assert_eq!(
            errors(json!({"namespace": "a", "replicas": "3"})),
            ["replicas: expected integer, got string `\"3\"`"]
        );
        assert_eq!(
            errors(json!({"namespace": "a", "replicas": null})),
            ["replicas: expected integer, got null"]
        );
        assert_eq!(
            errors(json!({"namespace": "a", "replicas": u64::MAX})),
            [format!("replicas: must be at most 500, got `{}`", u64::MAX)]
        );
        assert_eq!(
            errors(json!({"namespace": "a", "replicas": i64::MIN})),
            [format!("replicas: must be at least 0, got `{}`", i64::MIN)]
        );
        let registry = demo();
        for ratio in [json!(1), json!(0.25), json!(1.5)] {
            let input = params(json!({"namespace": "a", "replicas": 1, "ratio": ratio}));
            assert!(action(&registry).validate_params(&input).is_ok(), "{ratio}");
        }
        assert_eq!(
            errors(json!({"namespace": "a", "replicas": 1, "ratio": 1.51})),
            ["ratio: must be at most 1.5, got `1.51`"]
        );
    }

    #[test]
    fn booleans_enums_arrays_and_objects() {
        assert_eq!(
            errors(json!({"namespace": "a", "replicas": 1, "dry_run": "true"})),
            ["dry_run: expected boolean, got string `\"true\"`"]
        );
        assert_eq!(
            errors(json!({"namespace": "a", "replicas": 1, "mode": 1})),
            ["mode: expected string, got integer `1`"]
        );
        assert_eq!(
            errors(json!({"namespace": "a", "replicas": 1, "command": ["ls", "-la", "a", "b"]})),
            [
                "command: must have at most 3 items, got 4",
                "command[1]: must match `[a-z]+`, got `-la`",
            ]
        );
        assert_eq!(
            errors(json!({"namespace": "a", "replicas": 1, "command": "ls -la"})),
            ["command: expected array of string, got string `\"ls -la\"`"]
        );
        assert_eq!(
            errors(json!({"namespace": "a", "replicas": 1, "labels": "app=web"})),
            ["labels: expected object, got string `\"app=web\"`"]
        );
    }

    #[test]
    fn sensitive_values_are_never_shown() {
        let errs = errors(json!({"namespace": "a", "replicas": 1, "token": "secret value"}));
        assert_eq!(errs, ["token: must match `[a-f0-9]{8}`"]);
        let errs = errors(json!({"namespace": "a", "replicas": 1, "token": 12345678}));
        assert_eq!(errs, ["token: expected string, got integer"]);
        let registry = demo();
        assert_eq!(
            action(&registry).sensitive_params().collect::<Vec<_>>(),
            ["token"]
        );
    }

    #[test]
    fn long_and_control_values_are_shortened_and_escaped() {
        let errs = errors(json!({"namespace": format!("A\n{}", "b".repeat(100)), "replicas": 1}));
        assert_eq!(errs.len(), 2);
        let shown = errs[1].split("got `").nth(1).unwrap();
        assert!(shown.starts_with("A\\nbbb"), "{shown}");
        assert!(shown.ends_with("…`"), "{shown}");
        assert!(!errs[1].contains('\n'));
    }

    #[test]
    fn param_error_display() {
        let e = super::ParamError {
            param: "replicas".into(),
            message: "must be at most 500, got `900`".into(),
        };
        assert_eq!(e.to_string(), "`replicas`: must be at most 500, got `900`");
    }
}
