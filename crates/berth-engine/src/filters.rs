//! Docker-style filters: a map from filter name to accepted values.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};

/// `{"dangling": ["true"], "label": ["a=b"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(pub BTreeMap<String, Vec<String>>);

impl Filters {
    pub fn get(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn insert(&mut self, name: &str, value: &str) {
        self.0
            .entry(name.to_string())
            .or_default()
            .push(value.to_string());
    }

    /// Refuses filter names not in `allowed`, naming the offender.
    pub fn check(&self, allowed: &[&str]) -> Result<()> {
        for k in self.0.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(EngineError::invalid(format!(
                    "invalid filter '{k}' (allowed: {})",
                    allowed.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The boolean value of a filter like `dangling=true`; an error for other values.
    pub fn bool(&self, name: &str) -> Result<Option<bool>> {
        let vals = self.get(name);
        let mut out = None;
        for v in vals {
            let b = match v.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(EngineError::invalid(format!(
                        "invalid filter '{name}={v}': value must be true or false"
                    )))
                }
            };
            if out.is_some_and(|o| o != b) {
                return Err(EngineError::invalid(format!(
                    "conflicting values for filter '{name}'"
                )));
            }
            out = Some(b);
        }
        Ok(out)
    }

    /// Whether labels satisfy every `label` filter value (`key` or `key=value`).
    pub fn labels_match(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.get(name).iter().all(|f| match f.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(f.as_str()),
        })
    }
}
