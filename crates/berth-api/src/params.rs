//! Query strings as Docker's clients write them: repeated keys (`names=a&names=b`),
//! booleans as `1`/`true`/`True`/`0`/`false`/empty, and `filters` as JSON in either of
//! its two shapes.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use berth_engine::Filters;

use crate::error::ApiError;

/// The decoded query string, in order, keys possibly repeated.
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn from_uri(uri: &axum::http::Uri) -> Result<Params, ApiError> {
        if uri.query().is_none() {
            return Ok(Params::default());
        }
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| ApiError::bad_request(format!("query string: {}", e.body_text())))?;
        Ok(Params(pairs))
    }

    /// The last value of `name` (Go's `r.Form.Get` takes the first; clients send one).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, treating an empty value like an absent one.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Every value of a repeated parameter, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean parameter; absent is `false`.
    pub fn bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some(v) => parse_bool(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid value for query parameter '{name}': {v:?} is not a boolean \
                     (use 1, true, 0 or false)"
                ))
            }),
        }
    }

    /// An integer parameter (Go's `strconv.Atoi`); absent or empty is `None`.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.non_empty(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value for query parameter '{name}': {v:?} is not an integer"
                ))
            }),
        }
    }

    /// The `filters` parameter (absent or empty is no filter).
    pub fn filters(&self) -> Result<Filters, ApiError> {
        match self.non_empty("filters") {
            None => Ok(Filters::default()),
            Some(v) => parse_filters(v),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Params, ApiError> {
        Params::from_uri(&parts.uri)
    }
}

/// Docker's boolean forms (Go's `strconv.ParseBool`, and empty as false).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "" | "0" | "f" | "F" | "false" | "False" | "FALSE" => Some(false),
        "1" | "t" | "T" | "true" | "True" | "TRUE" => Some(true),
        _ => None,
    }
}

/// Parses `filters`: `{"dangling":{"true":true}}` (value -> bool, what the docker CLI
/// sends) or `{"dangling":["true"]}` (the older list form).
pub fn parse_filters(raw: &str) -> Result<Filters, ApiError> {
    let bad =
        |why: String| ApiError::bad_request(format!("invalid query parameter 'filters': {why}"));
    let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(bad("expected a JSON object of filter names".to_string()));
    };
    let mut out = Filters::default();
    for (name, values) in map {
        match values {
            serde_json::Value::Object(m) => {
                for (v, on) in m {
                    match on {
                        serde_json::Value::Bool(true) => out.insert(&name, &v),
                        serde_json::Value::Bool(false) => {}
                        other => {
                            return Err(bad(format!(
                            "filter '{name}': value {v:?} maps to {other}, expected true or false"
                        )))
                        }
                    }
                }
            }
            serde_json::Value::Array(list) => {
                for v in list {
                    match v {
                        serde_json::Value::String(s) => out.insert(&name, &s),
                        other => {
                            return Err(bad(format!("filter '{name}': {other} is not a string")))
                        }
                    }
                }
            }
            other => {
                return Err(bad(format!(
                    "filter '{name}': expected an object or a list of strings, got {other}"
                )))
            }
        }
        // A filter named with no values still counts as present (Docker keeps the key).
        out.0.entry(name).or_default();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Result<Params, ApiError> {
        let uri: axum::http::Uri = format!("/x?{q}").parse().expect("valid uri");
        Params::from_uri(&uri)
    }

    #[test]
    fn both_filter_shapes_parse_alike() {
        let a = parse_filters(r#"{"dangling":{"true":true},"label":{"a=b":true,"c":true}}"#)
            .expect("map form");
        let b = parse_filters(r#"{"dangling":["true"],"label":["a=b","c"]}"#).expect("list form");
        assert_eq!(a, b);
        assert_eq!(a.get("dangling"), ["true"]);
    }

    #[test]
    fn bad_filters_name_the_parameter() {
        for raw in ["{", "[]", r#"{"dangling":"true"}"#, r#"{"dangling":[1]}"#] {
            let e = parse_filters(raw).expect_err(raw);
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(e.message.contains("'filters'"), "{}", e.message);
        }
    }

    #[test]
    fn booleans_take_docker_forms() {
        let p = params("a=1&b=True&c=&d=0&e=false&f=maybe").expect("parses");
        assert!(p.bool("a").expect("a"));
        assert!(p.bool("b").expect("b"));
        assert!(!p.bool("c").expect("c"));
        assert!(!p.bool("d").expect("d"));
        assert!(!p.bool("e").expect("e"));
        assert!(!p.bool("absent").expect("absent"));
        let e = p.bool("f").expect_err("f");
        assert!(e.message.contains("'f'"), "{}", e.message);
    }

    #[test]
    fn repeated_keys_keep_order() {
        let p = params("names=a&names=b%2Fc%3A1&x=1").expect("parses");
        assert_eq!(p.all("names"), ["a", "b/c:1"]);
    }
}
