//! Typed templates (`{{ params.x }}`) and state paths (`spec.containers[name={{ params.c }}].image`).

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::Params;

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text copied as is.
    Literal(String),
    /// `{{ params.NAME }}`: the value of a declared param.
    Param(String),
}

/// A string with `{{ params.NAME }}` placeholders, checked at load time against the
/// params its action declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<TemplatePart>,
}

impl Template {
    /// Parses `source`; `is_param` says whether a name is a declared param.
    pub(crate) fn parse(source: &str, is_param: &dyn Fn(&str) -> bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            let open = rest.find("{{");
            let close = rest.find("}}");
            match (open, close) {
                (None, None) => {
                    parts.push(TemplatePart::Literal(rest.to_owned()));
                    break;
                }
                (open, Some(c)) if open.is_none_or(|o| c < o) => {
                    return Err("unmatched `}}`".to_owned());
                }
                (Some(o), _) => {
                    let (literal, after) = rest.split_at(o);
                    if !literal.is_empty() {
                        parts.push(TemplatePart::Literal(literal.to_owned()));
                    }
                    let after = after.get(2..).unwrap_or_default();
                    let Some(end) = after.find("}}") else {
                        return Err("unclosed `{{`".to_owned());
                    };
                    let (inner, tail) = after.split_at(end);
                    let name = placeholder(inner, is_param)?;
                    parts.push(TemplatePart::Param(name));
                    rest = tail.get(2..).unwrap_or_default();
                }
                (None, Some(_)) => return Err("unmatched `}}`".to_owned()),
            }
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }

    /// The text as written in the action file.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The literal and placeholder pieces, in order.
    pub fn parts(&self) -> &[TemplatePart] {
        &self.parts
    }

    /// The names of the params the template refers to.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Param(name) => Some(name.as_str()),
            TemplatePart::Literal(_) => None,
        })
    }

    /// Substitutes the params: strings are inserted as they are, other values as JSON text.
    /// `None` when a referenced param is absent.
    pub fn render(&self, params: &Params) -> Option<String> {
        let mut out = String::with_capacity(self.source.len());
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Param(name) => push_value(&mut out, params.get(name)?),
            }
        }
        Some(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => out.push_str(s),
        other => out.push_str(&other.to_string()),
    }
}

/// Parses the inside of `{{ ... }}`.
fn placeholder(inner: &str, is_param: &dyn Fn(&str) -> bool) -> Result<String, String> {
    let inner = inner.trim();
    let Some(name) = inner.strip_prefix("params.") else {
        return Err(format!(
            "template placeholder `{{{{ {inner} }}}}` must be `{{{{ params.NAME }}}}`"
        ));
    };
    if !is_param(name) {
        return Err(format!("template refers to undeclared param `{name}`"));
    }
    Ok(name.to_owned())
}

/// A key of a [`StatePath`] segment, or the value of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKey {
    /// A fixed name.
    Literal(String),
    /// `{{ params.NAME }}`: the string value of a declared param.
    Param(String),
}

impl PathKey {
    /// The key with params substituted; `None` when a referenced param is absent.
    pub fn resolve<'a>(&'a self, params: &'a Params) -> Option<std::borrow::Cow<'a, str>> {
        match self {
            PathKey::Literal(s) => Some(std::borrow::Cow::Borrowed(s)),
            PathKey::Param(name) => match params.get(name)? {
                Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
                other => Some(std::borrow::Cow::Owned(other.to_string())),
            },
        }
    }
}

/// One step of a [`StatePath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// A key of a JSON object.
    Key(PathKey),
    /// `[N]`: the N-th element of an array (from 0).
    Index(usize),
    /// `[field=value]`: the first element of an array whose `field` equals `value`.
    Select {
        /// The field compared in each element.
        field: String,
        /// The value it must have.
        value: PathKey,
    },
}

/// Where a piece of state lives inside the object a backend returns, parsed at load time.
///
/// Syntax: dot-separated keys, each followed by any number of `[N]` indexes and
/// `[field=value]` selectors. A key or a selector value may be a template
/// `{{ params.NAME }}`; the value of the param is used as is (it is never parsed as
/// path syntax, so it may contain dots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePath {
    source: String,
    segments: Vec<PathSegment>,
}

impl StatePath {
    /// Parses `source`; `is_param` says whether a name is a declared param.
    pub(crate) fn parse(
        source: &str,
        is_param: &dyn Fn(&str) -> bool,
    ) -> Result<StatePath, String> {
        let mut segments = Vec::new();
        let mut rest = source;
        loop {
            // A key: a template or an identifier.
            let key;
            if let Some(after) = rest.strip_prefix("{{") {
                let end = after.find("}}").ok_or("unclosed `{{`")?;
                let (inner, tail) = after.split_at(end);
                key = PathKey::Param(placeholder(inner, is_param)?);
                rest = tail.get(2..).unwrap_or_default();
            } else {
                let len = rest.find(|c: char| !is_ident_char(c)).unwrap_or(rest.len());
                let (ident, tail) = rest.split_at(len);
                if ident.is_empty() {
                    return Err(match tail.chars().next() {
                        None | Some('.') => "empty path segment".to_owned(),
                        Some(c) => format!("unexpected `{c}` in path"),
                    });
                }
                key = PathKey::Literal(ident.to_owned());
                rest = tail;
            }
            segments.push(PathSegment::Key(key));
            // Indexes and selectors.
            while let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']').ok_or("unclosed `[`")?;
                let (inner, tail) = after.split_at(end);
                segments.push(selector(inner, is_param)?);
                rest = tail.get(1..).unwrap_or_default();
            }
            match rest.strip_prefix('.') {
                Some(after) => rest = after,
                None if rest.is_empty() => break,
                None => {
                    let c = rest.chars().next().unwrap_or(' ');
                    return Err(format!("unexpected `{c}` in path"));
                }
            }
        }
        Ok(StatePath {
            source: source.to_owned(),
            segments,
        })
    }

    /// The path as written in the action file.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed steps.
    pub fn segments(&self) -> &[PathSegment] {
        &self.segments
    }

    /// The names of the params the path refers to.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            PathSegment::Key(PathKey::Param(name))
            | PathSegment::Select {
                value: PathKey::Param(name),
                ..
            } => Some(name.as_str()),
            _ => None,
        })
    }

    /// Follows the path through `object`; `None` when a step does not exist or a
    /// referenced param is absent.
    pub fn resolve<'v>(&self, object: &'v Value, params: &Params) -> Option<&'v Value> {
        self.resolve_from(0, object, params)
    }

    /// Follows the path from its `start`-th segment.
    pub(crate) fn resolve_from<'v>(
        &self,
        start: usize,
        object: &'v Value,
        params: &Params,
    ) -> Option<&'v Value> {
        let mut current = object;
        for segment in self.segments.get(start..)? {
            current = match segment {
                PathSegment::Key(key) => current.get(key.resolve(params)?.as_ref())?,
                PathSegment::Index(i) => current.get(*i)?,
                PathSegment::Select { field, value } => {
                    let wanted = value.resolve(params)?;
                    current
                        .as_array()?
                        .iter()
                        .find(|item| match item.get(field) {
                            Some(Value::String(s)) => *s == wanted,
                            Some(other) => other.to_string() == wanted,
                            None => false,
                        })?
                }
            };
        }
        Some(current)
    }
}

impl fmt::Display for StatePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for StatePath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn selector(inner: &str, is_param: &dyn Fn(&str) -> bool) -> Result<PathSegment, String> {
    if inner.is_empty() {
        return Err("empty `[]` in path".to_owned());
    }
    if inner.bytes().all(|b| b.is_ascii_digit()) {
        return inner
            .parse()
            .map(PathSegment::Index)
            .map_err(|_| format!("index `{inner}` is too large"));
    }
    let Some((field, value)) = inner.split_once('=') else {
        return Err(format!(
            "`[{inner}]` is neither an index `[N]` nor a selector `[field=value]`"
        ));
    };
    if field.is_empty() || !field.chars().all(is_ident_char) {
        return Err(format!("invalid selector field `{field}`"));
    }
    let value = if let Some(after) = value.strip_prefix("{{") {
        let inner = after.strip_suffix("}}").ok_or("unclosed `{{`")?;
        PathKey::Param(placeholder(inner, is_param)?)
    } else if value.is_empty() {
        return Err(format!("empty selector value in `[{inner}]`"));
    } else if value.contains("{{") || value.contains("}}") {
        return Err(format!(
            "selector value `{value}` must be a literal or a single template"
        ));
    } else {
        PathKey::Literal(value.to_owned())
    };
    Ok(PathSegment::Select {
        field: field.to_owned(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn known(name: &str) -> bool {
        matches!(name, "container" | "key")
    }

    #[test]
    fn template_parts() {
        let t = Template::parse("ns-{{ params.key }}/{{params.container}}", &known).unwrap();
        assert_eq!(
            t.parts(),
            &[
                TemplatePart::Literal("ns-".into()),
                TemplatePart::Param("key".into()),
                TemplatePart::Literal("/".into()),
                TemplatePart::Param("container".into()),
            ]
        );
        let params: Params = json!({"key": "a", "container": 3})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(t.render(&params).unwrap(), "ns-a/3");
        assert_eq!(t.render(&Params::new()), None);
    }

    #[test]
    fn template_errors() {
        let err = |s: &str| Template::parse(s, &known).unwrap_err();
        assert_eq!(err("{{ params.key"), "unclosed `{{`");
        assert_eq!(err("a }} b"), "unmatched `}}`");
        assert_eq!(
            err("{{ params.nope }}"),
            "template refers to undeclared param `nope`"
        );
        assert!(err("{{ state.x }}").contains("must be `{{ params.NAME }}`"));
    }

    #[test]
    fn path_parse_and_resolve() {
        let p = StatePath::parse(
            "spec.template.spec.containers[name={{ params.container }}].image",
            &known,
        )
        .unwrap();
        assert_eq!(p.params().collect::<Vec<_>>(), ["container"]);
        let obj = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}]}}}});
        let params: Params = json!({"container": "b"}).as_object().unwrap().clone();
        assert_eq!(p.resolve(&obj, &params), Some(&json!("y:2")));

        let p = StatePath::parse("Reservations[0].Instances[0].State.Name", &known).unwrap();
        let obj = json!({"Reservations": [{"Instances": [{"State": {"Name": "running"}}]}]});
        assert_eq!(p.resolve(&obj, &Params::new()), Some(&json!("running")));

        let p = StatePath::parse("data.{{ params.key }}", &known).unwrap();
        let obj = json!({"data": {"app.properties": "v"}});
        let params: Params = json!({"key": "app.properties"})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(p.resolve(&obj, &params), Some(&json!("v")));
    }

    #[test]
    fn path_errors() {
        let err = |s: &str| StatePath::parse(s, &known).unwrap_err();
        assert_eq!(err(""), "empty path segment");
        assert_eq!(err("spec..replicas"), "empty path segment");
        assert_eq!(err("spec."), "empty path segment");
        assert_eq!(err("a[0"), "unclosed `[`");
        assert_eq!(err("a[]"), "empty `[]` in path");
        assert_eq!(
            err("a[x]"),
            "`[x]` is neither an index `[N]` nor a selector `[field=value]`"
        );
        assert_eq!(err("a[name=]"), "empty selector value in `[name=]`");
        assert_eq!(err("a b"), "unexpected ` ` in path");
        assert_eq!(
            err("a[name={{ params.zzz }}]"),
            "template refers to undeclared param `zzz`"
        );
    }
}
