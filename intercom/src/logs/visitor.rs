//! [`JsonVisitor`], which collects `tracing` fields as JSON values for the hclog layer.

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};

use super::RESERVED_KEYS;
use super::hclog::upsert;
use super::parse::value_text;

/// Collects `tracing` fields as JSON values.
#[derive(Default)]
pub(super) struct JsonVisitor {
    pub(super) message: Option<String>,
    pub(super) log_target: Option<String>,
    pairs: Vec<(String, Value)>,
}

impl JsonVisitor {
    pub(super) fn into_pairs(self) -> Vec<(String, Value)> {
        self.pairs
    }

    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => self.message = Some(value_text(&value)),
            "log.target" => self.log_target = Some(value_text(&value)),
            "log.module_path" | "log.file" | "log.line" => {}
            name if RESERVED_KEYS.contains(&name) => {}
            name => upsert(&mut self.pairs, name.to_owned(), value),
        }
    }
}

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value =
            i64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.put(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value =
            u64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.put(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.put(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}
