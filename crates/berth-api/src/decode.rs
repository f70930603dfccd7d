//! JSON request bodies decoded as Docker decodes them (Go's `encoding/json`), for every
//! endpoint and every nested object:
//!
//! - **`null` is absence**: a struct field given `null` keeps its default (Go leaves the
//!   field as it was); `null` where a list, a map, a string, a number or a boolean is
//!   expected inside a list or map is that type's zero value.
//! - **Keys match case-insensitively**, an exact match preferred (Go's `EqualFold` rule):
//!   `"restartpolicy"` and `"RESTARTPOLICY"` are `RestartPolicy`.
//! - **Unknown keys are ignored** (logged at debug).
//! - **A wrong type is a 400 naming the field** (`HostConfig.Memory: invalid type:
//!   string "x", expected i64`).
//!
//! The body is parsed into a `serde_json::Value` and the target type is deserialized from
//! [`GoValue`], a deserializer over that value which applies the rules above where serde
//! tells it the target's field names (`deserialize_struct`). Types decoded this way must
//! not use `#[serde(flatten)]` (serde then asks for a map and hides the field names):
//! decode the flattened part from the same value instead.

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::Deserializer;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Decodes a request body (`what` names it in errors: "create body"). An empty body is
/// an empty object.
pub fn body<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))?
    };
    value_as(value, what)
}

/// Decodes an already parsed value with the same rules.
pub fn value_as<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, ApiError> {
    from_value(value).map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}

/// Decodes a value with the same rules; the error names the field (`A.B: why`).
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(GoValue(value)).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

/// For `#[serde(deserialize_with)]` on a field whose type is decoded in two parts from
/// one object (what `flatten` would do; see the module docs): the object as a value.
pub fn object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    use serde::Deserialize;
    Value::deserialize(d)
}

/// A JSON value deserialized with Go's rules (see the module docs).
pub struct GoValue(pub Value);

type Error = serde_json::Error;

/// Renames the keys of `map` to the field names serde expects (exact match first, else
/// the first case-insensitive one) and drops `null` values.
fn remap(map: Map<String, Value>, fields: &'static [&'static str]) -> Map<String, Value> {
    let mut out = Map::with_capacity(map.len());
    // Exact keys win over folded ones, whatever their order in the body.
    let (exact, other): (Vec<_>, Vec<_>) = map
        .into_iter()
        .partition(|(k, _)| fields.contains(&k.as_str()));
    for (k, v) in exact.into_iter().chain(other) {
        if v.is_null() {
            continue;
        }
        let name = if fields.contains(&k.as_str()) {
            k
        } else if let Some(f) = fields.iter().find(|f| f.eq_ignore_ascii_case(&k)) {
            f.to_string()
        } else {
            tracing::debug!(key = %k, "unknown key in a request body ignored");
            continue;
        };
        if !out.contains_key(&name) {
            out.insert(name, v);
        }
    }
    out
}

struct Seq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Seq {
    type Error = Error;
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        match self.0.next() {
            Some(v) => seed.deserialize(GoValue(v)).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries {
    iter: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for Entries {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(k.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let v = self.value.take().unwrap_or(Value::Null);
        seed.deserialize(GoValue(v))
    }
}

fn entries(map: Map<String, Value>) -> Entries {
    Entries {
        iter: map.into_iter(),
        value: None,
    }
}

/// Primitive targets: `null` is the zero value; anything else is serde_json's.
macro_rules! primitive {
    ($($method:ident => $zero:expr),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                match self.0 {
                    Value::Null => $zero(visitor),
                    other => other.$method(visitor),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for GoValue {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(a) => visitor.visit_seq(Seq(a.into_iter())),
            Value::Object(m) => visitor.visit_map(entries(m)),
            other => other.deserialize_any(visitor),
        }
    }

    primitive! {
        deserialize_bool => |v: V| v.visit_bool(false),
        deserialize_i8 => |v: V| v.visit_i64(0),
        deserialize_i16 => |v: V| v.visit_i64(0),
        deserialize_i32 => |v: V| v.visit_i64(0),
        deserialize_i64 => |v: V| v.visit_i64(0),
        deserialize_u8 => |v: V| v.visit_u64(0),
        deserialize_u16 => |v: V| v.visit_u64(0),
        deserialize_u32 => |v: V| v.visit_u64(0),
        deserialize_u64 => |v: V| v.visit_u64(0),
        deserialize_f32 => |v: V| v.visit_f64(0.0),
        deserialize_f64 => |v: V| v.visit_f64(0.0),
        deserialize_str => |v: V| v.visit_str(""),
        deserialize_string => |v: V| v.visit_string(String::new()),
        deserialize_bytes => |v: V| v.visit_bytes(&[]),
        deserialize_byte_buf => |v: V| v.visit_byte_buf(Vec::new()),
        deserialize_unit => |v: V| v.visit_unit(),
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.0.deserialize_char(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(GoValue(other)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(a) => visitor.visit_seq(Seq(a.into_iter())),
            Value::Null => visitor.visit_seq(Seq(Vec::new().into_iter())),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(m) => visitor.visit_map(entries(m)),
            Value::Null => visitor.visit_map(entries(Map::new())),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(m) => visitor.visit_map(entries(remap(m, fields))),
            Value::Null => visitor.visit_map(entries(Map::new())),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.0.deserialize_identifier(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

impl de::IntoDeserializer<'_, Error> for GoValue {
    type Deserializer = GoValue;
    fn into_deserializer(self) -> GoValue {
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase", default)]
    struct Policy {
        name: String,
        maximum_retry_count: i64,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase", default)]
    struct Body {
        image: String,
        cmd: Option<Vec<String>>,
        restart_policy: Option<Policy>,
        labels: BTreeMap<String, String>,
        tty: bool,
        memory: i64,
        #[serde(rename = "UTSMode")]
        uts_mode: String,
        size: Option<[u64; 2]>,
        raw: Option<Value>,
    }

    fn decode(s: &str) -> Result<Body, ApiError> {
        body(s.as_bytes(), "test body")
    }

    #[test]
    fn null_is_absent_at_every_level() {
        let b = decode(
            r#"{"Image":"a","Cmd":null,"Tty":null,"Memory":null,"Labels":null,
                "RestartPolicy":{"Name":"unless-stopped","MaximumRetryCount":null}}"#,
        )
        .unwrap();
        assert_eq!(b.image, "a");
        assert_eq!(b.cmd, None);
        assert_eq!(
            b.restart_policy,
            Some(Policy {
                name: "unless-stopped".into(),
                maximum_retry_count: 0
            })
        );
        // Inside lists and maps, null is the zero value (Go's rule).
        let b = decode(r#"{"Cmd":["a",null],"Labels":{"k":null}}"#).unwrap();
        assert_eq!(b.cmd, Some(vec!["a".to_string(), String::new()]));
        assert_eq!(b.labels.get("k").map(String::as_str), Some(""));
        // A whole null object is the zero value.
        assert_eq!(
            decode(r#"{"RestartPolicy":null}"#).unwrap().restart_policy,
            None
        );
        assert_eq!(decode("null").unwrap(), Body::default());
        assert_eq!(decode("").unwrap(), Body::default());
    }

    #[test]
    fn keys_match_case_insensitively_exact_first() {
        let b =
            decode(r#"{"image":"a","TTY":true,"restartpolicy":{"name":"always"},"utsmode":"x"}"#)
                .unwrap();
        assert_eq!(b.image, "a");
        assert!(b.tty);
        assert_eq!(b.uts_mode, "x");
        assert_eq!(b.restart_policy.unwrap().name, "always");
        // The exact spelling wins whatever the order.
        assert_eq!(
            decode(r#"{"image":"low","Image":"exact"}"#).unwrap().image,
            "exact"
        );
        assert_eq!(
            decode(r#"{"Image":"exact","IMAGE":"up"}"#).unwrap().image,
            "exact"
        );
        // Map keys are data, never folded.
        let b = decode(r#"{"Labels":{"Image":"x","image":"y"}}"#).unwrap();
        assert_eq!(b.labels.len(), 2);
    }

    #[test]
    fn unknown_keys_are_ignored_and_wrong_types_name_the_field() {
        let b = decode(r#"{"Image":"a","NoSuchField":{"x":[1,2]},"Size":[24,80]}"#).unwrap();
        assert_eq!(b.size, Some([24, 80]));
        let e = decode(r#"{"Memory":"lots"}"#).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(
            e.message.contains("Memory") && e.message.contains("invalid type"),
            "{}",
            e.message
        );
        let e = decode(r#"{"RestartPolicy":{"MaximumRetryCount":"x"}}"#).unwrap_err();
        assert!(
            e.message.contains("RestartPolicy.MaximumRetryCount"),
            "{}",
            e.message
        );
        let e = decode(r#"{"Image":"a""#).unwrap_err();
        assert!(e.message.contains("invalid test body"), "{}", e.message);
        // Raw values pass through whole (decoded again by their own handler).
        let b = decode(r#"{"Raw":{"Type":"bind","x":null}}"#).unwrap();
        assert_eq!(b.raw, Some(serde_json::json!({"Type":"bind","x":null})));
    }
}
