//! Strict JSON request bodies, the same rules for every body of every service:
//!
//! - the media type is exactly `application/json` (a `charset=utf-8` parameter is
//!   allowed, nothing else): [`is_json_media_type`];
//! - syntax errors are the client's (400); everything below is a 422 naming each
//!   field with its JSON pointer, all of them in one answer;
//! - a key repeated in one object is refused (JSON parsers disagree on which
//!   copy wins, so accepting it would let two readers see two requests);
//! - a struct is read only from an object, never from an array (serde would map
//!   `[250000, "USD"]` onto a fare's fields in order);
//! - a field the type does not know is refused, not dropped (`passangerName`);
//! - every string is NFC-normalised, so what is compared, counted and stored is
//!   the composed form, and control (Cc) and format (Cf) characters are refused
//!   (bidi overrides and zero-width characters make text look like other text).
//!
//! [`text_pattern`] is the same character rule as an OpenAPI `pattern`.

use std::cell::RefCell;
use std::fmt;
use std::sync::LazyLock;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Number, Value};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::problem::FieldError;

/// Why a body was refused.
#[derive(Debug)]
pub enum JsonError {
    /// Not JSON at all (400).
    Syntax(String),
    /// JSON that breaks the rules (422), every broken field named.
    Invalid(Vec<FieldError>),
}

/// A body read by [`from_slice`].
#[derive(Debug)]
pub struct Parsed<T> {
    pub value: T,
    /// The body in canonical form (keys sorted at every level, strings in NFC,
    /// no white space): what idempotency keys compare.
    pub canonical: Vec<u8>,
}

/// Whether `content_type` is `application/json`, optionally with
/// `charset=utf-8` (case-insensitive), and nothing else.
pub fn is_json_media_type(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|parameter| {
        let Some((name, value)) = parameter.split_once('=') else {
            return false;
        };
        name.trim().eq_ignore_ascii_case("charset")
            && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
    })
}

/// Reads a JSON object body as `T` under the rules above.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<Parsed<T>, JsonError> {
    let issues = RefCell::new(Vec::new());
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = ValueSeed {
        path: &Path::Root,
        issues: &issues,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value))
    .map_err(|e| JsonError::Syntax(format!("The body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(JsonError::Invalid(vec![FieldError::at(
            "$",
            "",
            "must be a JSON object",
        )]));
    }
    let typed = T::deserialize(Strict {
        value: &value,
        path: &Path::Root,
        issues: &issues,
    });
    let mut errors = issues.into_inner();
    match typed {
        Ok(typed) if errors.is_empty() => {
            let canonical = serde_json::to_vec(&sorted(&value))
                .map_err(|e| JsonError::Syntax(e.to_string()))?;
            Ok(Parsed {
                value: typed,
                canonical,
            })
        }
        Ok(_) => Err(JsonError::Invalid(errors)),
        Err(e) => {
            let path = e.path.unwrap_or_default();
            errors.push(FieldError::at(path.field, path.pointer, e.message));
            Err(JsonError::Invalid(errors))
        }
    }
}

/// Whether `c` is refused in text: a control (Cc) or format (Cf) character.
pub fn is_refused_char(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control | GeneralCategory::Format
    )
}

/// The text rule as a regular expression for OpenAPI's `pattern`: no control
/// or format character anywhere, and at least one character that is not white
/// space. Code points are written `\uXXXX` and, beyond the BMP, `\UXXXXXXXX`
/// (understood by Python's `re`, Rust's `regex` and most JSON Schema tools).
pub fn text_pattern() -> &'static str {
    static PATTERN: LazyLock<String> = LazyLock::new(|| {
        let refused = ranges(is_refused_char);
        let blank = ranges(|c| is_refused_char(c) || c.is_whitespace());
        format!("^[^{refused}]*[^{blank}][^{refused}]*$")
    });
    &PATTERN
}

/// The OpenAPI schema of a text field under the rule above: `min..=max`
/// characters (counted after NFC normalisation), [`text_pattern`].
pub fn text_schema(
    min: usize,
    max: usize,
    nullable: bool,
    description: &str,
    example: &str,
) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let schema_type = if nullable {
        SchemaType::Array(vec![Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new()
        .schema_type(schema_type)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(text_pattern()))
        .description(Some(description))
        .examples([example])
        .build()
}

/// The characters `matches` as a character-class body of ranges.
fn ranges(matches: impl Fn(char) -> bool) -> String {
    let escape = |c: char| {
        if (c as u32) <= 0xFFFF {
            format!("\\u{:04X}", c as u32)
        } else {
            format!("\\U{:08X}", c as u32)
        }
    };
    let mut out = String::new();
    let mut start: Option<char> = None;
    let mut last = '\0';
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        let hit = matches(c);
        // Surrogates are not chars: a range may jump over them.
        let adjacent = start.is_some() && (last as u32 + 1 == c as u32 || c as u32 == 0xE000);
        match (hit, start) {
            (true, Some(_)) if adjacent => {}
            (true, _) => {
                if let Some(s) = start.take() {
                    push_range(&mut out, s, last, escape);
                }
                start = Some(c);
            }
            (false, Some(s)) => {
                push_range(&mut out, s, last, escape);
                start = None;
            }
            (false, None) => {}
        }
        if hit {
            last = c;
        }
    }
    if let Some(s) = start {
        push_range(&mut out, s, last, escape);
    }
    out
}

fn push_range(out: &mut String, from: char, to: char, escape: impl Fn(char) -> String) {
    out.push_str(&escape(from));
    if to != from {
        out.push('-');
        out.push_str(&escape(to));
    }
}

// --- Paths ------------------------------------------------------------------------

/// Where in the body a value is, as a linked list from the leaf to the root.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

/// A location in both notations.
#[derive(Debug, Clone, Default)]
struct Location {
    field: String,
    pointer: String,
}

impl Path<'_> {
    fn location(&self) -> Location {
        match self {
            Path::Root => Location {
                field: "$".to_owned(),
                pointer: String::new(),
            },
            Path::Key(parent, key) => {
                let parent = parent.location();
                let field = if parent.field == "$" {
                    (*key).to_owned()
                } else {
                    format!("{}.{key}", parent.field)
                };
                let pointer = format!(
                    "{}/{}",
                    parent.pointer,
                    key.replace('~', "~0").replace('/', "~1")
                );
                Location { field, pointer }
            }
            Path::Index(parent, index) => {
                let parent = parent.location();
                let field = if parent.field == "$" {
                    format!("[{index}]")
                } else {
                    format!("{}[{index}]", parent.field)
                };
                Location {
                    field,
                    pointer: format!("{}/{index}", parent.pointer),
                }
            }
        }
    }

    fn issue(&self, message: impl Into<String>) -> FieldError {
        let location = self.location();
        FieldError::at(location.field, location.pointer, message)
    }
}

// --- Step 1: bytes to a Value, noting duplicate keys and refused characters -------

struct ValueSeed<'a, 'p> {
    path: &'a Path<'p>,
    issues: &'a RefCell<Vec<FieldError>>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        if let Some(c) = v.chars().find(|&c| is_refused_char(c)) {
            self.issues.borrow_mut().push(self.path.issue(format!(
                "must not contain control or format characters (found U+{:04X})",
                c as u32
            )));
        }
        Ok(Value::String(v.nfc().collect()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = Path::Index(self.path, items.len());
            let seed = ValueSeed {
                path: &path,
                issues: self.issues,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = Path::Key(self.path, &key);
            let value = map.next_value_seed(ValueSeed {
                path: &path,
                issues: self.issues,
            })?;
            if object.contains_key(&key) {
                self.issues
                    .borrow_mut()
                    .push(path.issue("appears more than once in its object"));
            } else {
                object.insert(key, value);
            }
        }
        Ok(Value::Object(object))
    }
}

// --- Step 2: the Value to T, strictly ------------------------------------------------

/// A deserialization error with the location where it happened.
#[derive(Debug)]
struct DeError {
    path: Option<Location>,
    message: String,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<M: fmt::Display>(message: M) -> Self {
        Self {
            path: None,
            message: message.to_string(),
        }
    }
}

/// A deserializer over a parsed Value that reads structs only from objects and
/// records the keys a struct does not know.
struct Strict<'v, 'a, 'p> {
    value: &'v Value,
    path: &'a Path<'p>,
    issues: &'a RefCell<Vec<FieldError>>,
}

impl Strict<'_, '_, '_> {
    /// Places an error that has no location yet at this value.
    fn located<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|mut e| {
            if e.path.is_none() {
                e.path = Some(self.path.location());
            }
            e
        })
    }

    fn unexpected(&self) -> de::Unexpected<'_> {
        match self.value {
            Value::Null => de::Unexpected::Unit,
            Value::Bool(b) => de::Unexpected::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => de::Unexpected::Unsigned(u),
                (_, Some(i), _) => de::Unexpected::Signed(i),
                (_, _, Some(f)) => de::Unexpected::Float(f),
                _ => de::Unexpected::Other("number"),
            },
            Value::String(s) => de::Unexpected::Str(s),
            Value::Array(_) => de::Unexpected::Seq,
            Value::Object(_) => de::Unexpected::Map,
        }
    }
}

impl<'de> de::Deserializer<'de> for Strict<'de, '_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                let float = n.as_f64().unwrap_or(f64::NAN);
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else if float.fract() == 0.0 && float.abs() < 9.0e15 {
                    // JSON (and JSON Schema's `integer`) does not tell 2.0 from 2.
                    visitor.visit_i64(float as i64)
                } else {
                    visitor.visit_f64(float)
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visitor.visit_seq(Items {
                items: items.iter().enumerate(),
                path: self.path,
                issues: self.issues,
            }),
            Value::Object(map) => visitor.visit_map(Entries {
                entries: map.iter().collect::<Vec<_>>().into_iter(),
                value: None,
                path: self.path,
                issues: self.issues,
            }),
        };
        self.located(result)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => {
                let path = self.path;
                let result = visitor.visit_some(Strict { ..self });
                result.map_err(|mut e| {
                    if e.path.is_none() {
                        e.path = Some(path.location());
                    }
                    e
                })
            }
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let Value::Object(map) = self.value else {
            return self.located(Err(de::Error::custom("must be a JSON object")));
        };
        let mut known = Vec::new();
        for (key, value) in map {
            if fields.contains(&key.as_str()) {
                known.push((key, value));
            } else {
                let path = Path::Key(self.path, key);
                self.issues.borrow_mut().push(path.issue(format!(
                    "is not a field of this object (known fields: {})",
                    fields.join(", ")
                )));
            }
        }
        let result = visitor.visit_map(Entries {
            entries: known.into_iter(),
            value: None,
            path: self.path,
            issues: self.issues,
        });
        self.located(result)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match self.value {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => Err(de::Error::invalid_type(self.unexpected(), &"a string")),
        };
        self.located(result)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let path = self.path;
        visitor.visit_newtype_struct(self).map_err(|mut e| {
            if e.path.is_none() {
                e.path = Some(path.location());
            }
            e
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct Items<'v, 'a, 'p, I: Iterator<Item = (usize, &'v Value)>> {
    items: I,
    path: &'a Path<'p>,
    issues: &'a RefCell<Vec<FieldError>>,
}

impl<'de, I: Iterator<Item = (usize, &'de Value)>> SeqAccess<'de> for Items<'de, '_, '_, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((index, value)) = self.items.next() else {
            return Ok(None);
        };
        let path = Path::Index(self.path, index);
        seed.deserialize(Strict {
            value,
            path: &path,
            issues: self.issues,
        })
        .map(Some)
    }
}

struct Entries<'v, 'a, 'p, I: Iterator<Item = (&'v String, &'v Value)>> {
    entries: I,
    value: Option<(&'v String, &'v Value)>,
    path: &'a Path<'p>,
    issues: &'a RefCell<Vec<FieldError>>,
}

impl<'de, I: Iterator<Item = (&'de String, &'de Value)>> MapAccess<'de>
    for Entries<'de, '_, '_, I>
{
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((key, value));
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, DeError> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value asked for before its key"))?;
        let path = Path::Key(self.path, key);
        seed.deserialize(Strict {
            value,
            path: &path,
            issues: self.issues,
        })
    }
}

/// The same JSON with object keys sorted at every level (serde_json may be built
/// with `preserve_order`, so this cannot be left to the map type).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Outer {
        name: Option<String>,
        inner: Option<Inner>,
        tags: Option<Vec<String>>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        amount: Option<i64>,
    }

    fn invalid(raw: &str) -> Vec<(String, Option<String>)> {
        match from_slice::<Outer>(raw.as_bytes()) {
            Err(JsonError::Invalid(errors)) => {
                errors.into_iter().map(|e| (e.field, e.pointer)).collect()
            }
            other => panic!("expected a 422 for {raw}, got {other:?}"),
        }
    }

    fn at(field: &str, pointer: &str) -> (String, Option<String>) {
        (field.to_owned(), Some(pointer.to_owned()))
    }

    #[test]
    fn a_good_body_is_read_and_canonicalised() {
        let parsed = from_slice::<Outer>(
            br#"{"tags":["b","a"], "name":"Zu\u0308rich","inner":{"amount":5}}"#,
        )
        .unwrap();
        assert_eq!(parsed.value.name.as_deref(), Some("Z\u{FC}rich"));
        assert_eq!(parsed.value.inner, Some(Inner { amount: Some(5) }));
        assert_eq!(
            String::from_utf8(parsed.canonical).unwrap(),
            r#"{"inner":{"amount":5},"name":"Zürich","tags":["b","a"]}"#
        );
    }

    #[test]
    fn syntax_errors_are_not_field_errors() {
        for raw in ["{", "", "{} x", "[1,]"] {
            assert!(
                matches!(
                    from_slice::<Outer>(raw.as_bytes()),
                    Err(JsonError::Syntax(_))
                ),
                "{raw}"
            );
        }
    }

    #[test]
    fn every_broken_rule_is_named_with_its_pointer() {
        assert_eq!(invalid("[]"), [at("$", "")]);
        assert_eq!(invalid(r#"{"inner":[5]}"#), [at("inner", "/inner")]);
        assert_eq!(
            invalid(r#"{"nmae":"x","inner":{"amount":1,"cents":2}}"#),
            [at("nmae", "/nmae"), at("inner.cents", "/inner/cents")]
        );
        assert_eq!(
            invalid(r#"{"name":"a","name":"b","inner":{"amount":1,"amount":1}}"#),
            [at("name", "/name"), at("inner.amount", "/inner/amount")]
        );
        assert_eq!(
            invalid(r#"{"name":"a\u202eb","tags":["ok","\u200b"]}"#),
            [at("name", "/name"), at("tags[1]", "/tags/1")]
        );
        assert_eq!(
            invalid(r#"{"inner":{"amount":1.5}}"#),
            [at("inner.amount", "/inner/amount")]
        );
        assert_eq!(invalid(r#"{"tags":["a",1]}"#), [at("tags[1]", "/tags/1")]);
        assert_eq!(invalid(r#"{"a/b~":1}"#), [at("a/b~", "/a~1b~0")]);
    }

    #[test]
    fn only_plain_json_is_json() {
        for good in [
            "application/json",
            "Application/JSON",
            "application/json; charset=UTF-8",
            "application/json;charset=\"utf-8\"",
        ] {
            assert!(is_json_media_type(good), "{good}");
        }
        for bad in [
            "application/merge-patch+json",
            "text/json",
            "application/json; charset=latin1",
            "application/json; v=1",
            "application/jsonx",
            "",
        ] {
            assert!(!is_json_media_type(bad), "{bad}");
        }
    }

    #[test]
    fn the_pattern_is_the_rule() {
        let pattern = text_pattern();
        assert!(pattern.contains("\\u0000-\\u001F"), "{pattern}");
        assert!(pattern.contains("\\u202A-\\u202E"), "{pattern}");
        assert!(pattern.contains("\\U000E0001"), "{pattern}");
        for c in [
            '\u{AD}',
            '\u{200B}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{E0020}',
            '\t',
            '\u{7F}',
        ] {
            assert!(is_refused_char(c), "{c:?}");
        }
        for c in ['a', 'é', ' ', '\u{3000}', '😀', 'ß'] {
            assert!(!is_refused_char(c), "{c:?}");
        }
    }
}
