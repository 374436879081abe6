//! The one encoding the evidence chain hashes: compact JSON with object keys
//! sorted, and no non-finite floats.

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::Value;

use super::EvidenceError;

/// Encodes `value` as the canonical JSON the evidence chain hashes: compact
/// (no whitespace), object keys sorted by their UTF-8 bytes at every level,
/// strings escaped as serde_json escapes them, numbers as serde_json prints
/// them. A NaN or infinite float is an error: serde_json would quietly write
/// `null`, and a record must never say something other than what was
/// measured.
///
/// The keys are sorted here rather than relying on serde_json's `Map` being
/// a `BTreeMap`, because any crate in the build enabling serde_json's
/// `preserve_order` feature would silently change that.
pub fn canonical_json(value: &impl Serialize) -> Result<Vec<u8>, EvidenceError> {
    value
        .serialize(FiniteCheck)
        .map_err(|e| EvidenceError::Encoding(e.0))?;
    let value = serde_json::to_value(value).map_err(|e| EvidenceError::Encoding(e.to_string()))?;
    let mut out = Vec::new();
    write_sorted(&value, &mut out)?;
    Ok(out)
}

fn write_sorted(value: &Value, out: &mut Vec<u8>) -> Result<(), EvidenceError> {
    match value {
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> = map.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, field)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out)?;
                out.push(b':');
                write_sorted(field, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_sorted(item, out)?;
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out)?,
    }
    Ok(())
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) -> Result<(), EvidenceError> {
    serde_json::to_writer(out, value).map_err(|e| EvidenceError::Encoding(e.to_string()))
}

/// Where in the value a non-finite float was found, built on the way out.
#[derive(Debug)]
struct CheckError(String);

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CheckError {}

impl ser::Error for CheckError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        CheckError(msg.to_string())
    }
}

impl CheckError {
    fn within(self, segment: &str) -> Self {
        CheckError(format!("{segment}: {}", self.0))
    }
}

fn check_float(v: f64) -> Result<(), CheckError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(CheckError(format!(
            "{v} is not a finite number, and JSON cannot hold it"
        )))
    }
}

/// A serializer that produces nothing and fails on the first non-finite
/// float, naming the field path that holds it.
struct FiniteCheck;

/// The compound serializers' state: the index or key being visited, for the
/// error's path.
struct Compound {
    index: usize,
    pending_key: Option<String>,
}

impl Compound {
    fn new() -> Self {
        Compound {
            index: 0,
            pending_key: None,
        }
    }

    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), CheckError> {
        let at = self.index;
        self.index += 1;
        value
            .serialize(FiniteCheck)
            .map_err(|e| e.within(&format!("[{at}]")))
    }

    fn field<T: ?Sized + Serialize>(&mut self, key: &str, value: &T) -> Result<(), CheckError> {
        value.serialize(FiniteCheck).map_err(|e| e.within(key))
    }
}

macro_rules! accept {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _v: $ty) -> Result<(), CheckError> { Ok(()) })*
    };
}

impl ser::Serializer for FiniteCheck {
    type Ok = ();
    type Error = CheckError;
    type SerializeSeq = Compound;
    type SerializeTuple = Compound;
    type SerializeTupleStruct = Compound;
    type SerializeTupleVariant = Compound;
    type SerializeMap = Compound;
    type SerializeStruct = Compound;
    type SerializeStructVariant = Compound;

    accept!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, v: f32) -> Result<(), CheckError> {
        check_float(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), CheckError> {
        check_float(v)
    }
    fn serialize_none(self) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), CheckError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<(), CheckError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        value.serialize(self).map_err(|e| e.within(variant))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound, CheckError> {
        Ok(Compound::new())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound, CheckError> {
        Ok(Compound::new())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound, CheckError> {
        Ok(Compound::new())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Compound, CheckError> {
        Ok(Compound::new())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound, CheckError> {
        Ok(Compound::new())
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound, CheckError> {
        Ok(Compound::new())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Compound, CheckError> {
        Ok(Compound::new())
    }
}

impl ser::SerializeSeq for Compound {
    type Ok = ();
    type Error = CheckError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), CheckError> {
        self.element(value)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeTuple for Compound {
    type Ok = ();
    type Error = CheckError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), CheckError> {
        self.element(value)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Compound {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), CheckError> {
        self.element(value)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Compound {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), CheckError> {
        self.element(value)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeMap for Compound {
    type Ok = ();
    type Error = CheckError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), CheckError> {
        // Only for the error's path: keys that are not plain strings are
        // named by position instead.
        self.pending_key = key.serialize(KeyName).ok();
        key.serialize(FiniteCheck)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), CheckError> {
        match self.pending_key.take() {
            Some(key) => self.field(&key, value),
            None => self.element(value),
        }
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeStruct for Compound {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound {
    type Ok = ();
    type Error = CheckError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CheckError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), CheckError> {
        Ok(())
    }
}

/// Reads a map key that is a plain string; anything else is refused (and
/// then named by position).
struct KeyName;

macro_rules! refuse {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<String, CheckError> {
            Err(CheckError(String::new()))
        })*
    };
}

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = CheckError;
    type SerializeSeq = Impossible<String, CheckError>;
    type SerializeTuple = Impossible<String, CheckError>;
    type SerializeTupleStruct = Impossible<String, CheckError>;
    type SerializeTupleVariant = Impossible<String, CheckError>;
    type SerializeMap = Impossible<String, CheckError>;
    type SerializeStruct = Impossible<String, CheckError>;
    type SerializeStructVariant = Impossible<String, CheckError>;

    fn serialize_str(self, v: &str) -> Result<String, CheckError> {
        Ok(v.to_owned())
    }
    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<String, CheckError> {
        Err(CheckError(String::new()))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, CheckError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, CheckError> {
        Err(CheckError(String::new()))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, CheckError> {
        Err(CheckError(String::new()))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, CheckError> {
        Err(CheckError(String::new()))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, CheckError> {
        Err(CheckError(String::new()))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, CheckError> {
        Err(CheckError(String::new()))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, CheckError> {
        Err(CheckError(String::new()))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, CheckError> {
        Err(CheckError(String::new()))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, CheckError> {
        Err(CheckError(String::new()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    #[derive(Serialize)]
    struct Unsorted {
        zeta: u32,
        alpha: &'static str,
        nested: HashMap<&'static str, Vec<f64>>,
        mid: Option<bool>,
    }

    #[test]
    fn keys_are_sorted_at_every_level_and_output_is_compact() {
        let mut nested = HashMap::new();
        nested.insert("b", vec![1.5, 2.0]);
        nested.insert("a", vec![]);
        let value = Unsorted {
            zeta: 1,
            alpha: "x \"q\" é\n",
            nested,
            mid: None,
        };
        let bytes = canonical_json(&value).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"alpha":"x \"q\" é\n","mid":null,"nested":{"a":[],"b":[1.5,2.0]},"zeta":1}"#
        );
    }

    #[test]
    fn serde_json_map_is_sorted_in_this_build() {
        // The brief's promise that serde_json's own Map is sorted (the
        // `preserve_order` feature is off). The encoding does not depend on
        // it, but other code comparing `to_vec` output with ours would.
        let map: serde_json::Map<String, Value> = [("b", 1), ("a", 2)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect();
        assert_eq!(
            serde_json::to_string(&Value::Object(map)).unwrap(),
            r#"{"a":2,"b":1}"#
        );
    }

    #[test]
    fn same_value_in_any_insertion_order_encodes_identically() {
        let a: BTreeMap<&str, i32> = [("x", 1), ("y", 2)].into();
        let mut b: HashMap<&str, i32> = HashMap::new();
        b.insert("y", 2);
        b.insert("x", 1);
        assert_eq!(canonical_json(&a).unwrap(), canonical_json(&b).unwrap());
    }

    #[test]
    fn non_finite_floats_are_refused_with_their_path() {
        let mut nested = HashMap::new();
        nested.insert("cpu", vec![1.0, f64::NAN]);
        let value = Unsorted {
            zeta: 1,
            alpha: "",
            nested,
            mid: Some(true),
        };
        let err = canonical_json(&value).unwrap_err().to_string();
        assert!(err.contains("nested: cpu: [1]: NaN"), "{err}");
        assert!(canonical_json(&f32::INFINITY).is_err());
    }
}
