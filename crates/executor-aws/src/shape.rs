//! Building the JSON the AWS CLI prints (`--output json`) from SDK types, which are not
//! `Serialize`: absent fields are left out, as the CLI leaves them out.

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde_json::{Map, Value};

/// A JSON object under construction.
#[derive(Debug, Default)]
pub(crate) struct Obj(Map<String, Value>);

impl Obj {
    pub(crate) fn new() -> Obj {
        Obj(Map::new())
    }

    /// A string field, left out when absent.
    pub(crate) fn s(mut self, key: &str, v: Option<&str>) -> Obj {
        if let Some(v) = v {
            self.0.insert(key.to_owned(), Value::String(v.to_owned()));
        }
        self
    }

    /// An integer field, left out when absent.
    pub(crate) fn i(mut self, key: &str, v: Option<i64>) -> Obj {
        if let Some(v) = v {
            self.0.insert(key.to_owned(), Value::from(v));
        }
        self
    }

    /// A boolean field, left out when absent.
    pub(crate) fn b(mut self, key: &str, v: Option<bool>) -> Obj {
        if let Some(v) = v {
            self.0.insert(key.to_owned(), Value::Bool(v));
        }
        self
    }

    /// A timestamp field as ISO 8601 (`2024-05-01T12:00:00Z`), left out when absent.
    pub(crate) fn t(self, key: &str, v: Option<&DateTime>) -> Obj {
        let text = v.and_then(|d| d.fmt(Format::DateTime).ok());
        self.s(key, text.as_deref())
    }

    /// Any JSON value, left out when `None`.
    pub(crate) fn v(mut self, key: &str, v: Option<Value>) -> Obj {
        if let Some(v) = v {
            self.0.insert(key.to_owned(), v);
        }
        self
    }

    /// A list field (always present, as the CLI prints empty lists).
    pub(crate) fn list(mut self, key: &str, items: Vec<Value>) -> Obj {
        self.0.insert(key.to_owned(), Value::Array(items));
        self
    }

    pub(crate) fn done(self) -> Value {
        Value::Object(self.0)
    }
}
