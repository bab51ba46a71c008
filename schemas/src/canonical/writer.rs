//! A serde `Serializer` that writes canonical JSON straight from a value, with no
//! `serde_json::Value` in between: every event the sequencer appends goes through here,
//! and building a `Value` tree (a map and a string per member) was a fifth of the
//! sequencer's time under load.
//!
//! It writes exactly what [`super::write_value`] writes for the same value (a test holds
//! the two to each other on every event kind's samples): members sorted by the UTF-16
//! code units of their names, integers below 2^53 in magnitude, no floats, strings
//! escaped as JCS has them. Enums are represented as serde_json represents them.

use std::borrow::Cow;
use std::ops::Range;

use serde::ser::{self, Serialize};

use super::{CanonicalError, INTEGER_MAGNITUDE_MAX, write_string};

impl ser::Error for CanonicalError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        CanonicalError::NotJson(msg.to_string())
    }
}

/// Writes `value` canonically at the end of `out`.
pub fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    value.serialize(Writer { out })
}

/// The name under which serde_json serializes a `RawValue` (text this writer would
/// otherwise mistake for an object).
const RAW_VALUE: &str = "$serde_json::private::RawValue";

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

fn integer(out: &mut Vec<u8>, negative: bool, magnitude: u64) -> Result<(), CanonicalError> {
    if magnitude > INTEGER_MAGNITUDE_MAX {
        let shown = if negative {
            format!("-{magnitude}")
        } else {
            magnitude.to_string()
        };
        return Err(CanonicalError::IntegerTooLarge(shown));
    }
    if negative && magnitude > 0 {
        out.push(b'-');
    }
    out.extend_from_slice(itoa::Buffer::new().format(magnitude).as_bytes());
    Ok(())
}

/// An object being written: each member's value is written into `scratch` as it comes,
/// then the members are put in canonical order.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    scratch: Vec<u8>,
    members: Vec<(Cow<'static, str>, Range<usize>)>,
    /// The name given to `serialize_key`, waiting for its value.
    pending: Option<String>,
    /// For `{"Variant": {...}}`: the variant's name, written around the object.
    variant: Option<&'static str>,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>, len: Option<usize>, variant: Option<&'static str>) -> Self {
        Object {
            out,
            scratch: Vec::with_capacity(128),
            members: Vec::with_capacity(len.unwrap_or(8)),
            pending: None,
            variant,
        }
    }

    fn member<T: Serialize + ?Sized>(
        &mut self,
        name: Cow<'static, str>,
        value: &T,
    ) -> Result<(), CanonicalError> {
        let start = self.scratch.len();
        value.serialize(Writer {
            out: &mut self.scratch,
        })?;
        self.members.push((name, start..self.scratch.len()));
        Ok(())
    }

    fn finish(mut self) -> Result<(), CanonicalError> {
        self.members
            .sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
        if let Some(variant) = self.variant {
            self.out.push(b'{');
            write_string(variant, self.out);
            self.out.push(b':');
        }
        self.out.push(b'{');
        for (index, (name, range)) in self.members.iter().enumerate() {
            if index > 0 {
                self.out.push(b',');
            }
            write_string(name, self.out);
            self.out.push(b':');
            self.out.extend_from_slice(&self.scratch[range.clone()]);
        }
        self.out.push(b'}');
        if self.variant.is_some() {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// An array being written; `variant` as for [`Object`].
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    variant: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Writer { out: self.out })
    }

    fn finish(self) -> Result<(), CanonicalError> {
        self.out.push(b']');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), CanonicalError> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), CanonicalError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), CanonicalError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), CanonicalError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), CanonicalError> {
        integer(self.out, v < 0, v.unsigned_abs())
    }
    fn serialize_i128(self, v: i128) -> Result<(), CanonicalError> {
        let magnitude = u64::try_from(v.unsigned_abs())
            .map_err(|_| CanonicalError::IntegerTooLarge(v.to_string()))?;
        integer(self.out, v < 0, magnitude)
    }
    fn serialize_u8(self, v: u8) -> Result<(), CanonicalError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), CanonicalError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), CanonicalError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), CanonicalError> {
        integer(self.out, false, v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), CanonicalError> {
        let magnitude =
            u64::try_from(v).map_err(|_| CanonicalError::IntegerTooLarge(v.to_string()))?;
        integer(self.out, false, magnitude)
    }
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        Err(CanonicalError::NotAnInteger(v.to_string()))
    }
    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        Err(CanonicalError::NotAnInteger(v.to_string()))
    }
    fn serialize_char(self, v: char) -> Result<(), CanonicalError> {
        write_string(v.encode_utf8(&mut [0; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), CanonicalError> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonicalError> {
        // serde_json writes bytes as an array of numbers.
        let mut array = self.serialize_seq(Some(v.len()))?;
        for byte in v {
            ser::SerializeSeq::serialize_element(&mut array, byte)?;
        }
        ser::SerializeSeq::end(array)
    }
    fn serialize_none(self) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), CanonicalError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.push(b':');
        value.serialize(Writer { out: self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, CanonicalError> {
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
            first: true,
            variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, CanonicalError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Array<'a>, CanonicalError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Array<'a>, CanonicalError> {
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.extend_from_slice(b":[");
        Ok(Array {
            out: self.out,
            first: true,
            variant: true,
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, CanonicalError> {
        Ok(Object::new(self.out, len, None))
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Object<'a>, CanonicalError> {
        if name == RAW_VALUE {
            return Err(CanonicalError::NotJson(
                "raw JSON text has no canonical form here".into(),
            ));
        }
        Ok(Object::new(self.out, Some(len), None))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, CanonicalError> {
        Ok(Object::new(self.out, Some(len), Some(variant)))
    }
}

/// The sequence-like traits all add an element; they differ only in the method's name.
macro_rules! array_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Array<'_> {
            type Ok = ();
            type Error = CanonicalError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
                self.element(value)
            }
            fn end(self) -> Result<(), CanonicalError> {
                self.finish()
            }
        }
    )*};
}

array_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CanonicalError> {
        // Keys are rare in events (maps are); read them the way serde_json does, which
        // also turns integer keys into their decimal text.
        let name = match serde_json::to_value(key)
            .map_err(|err| CanonicalError::NotJson(err.to_string()))?
        {
            serde_json::Value::String(name) => name,
            serde_json::Value::Number(number) => number.to_string(),
            other => {
                return Err(CanonicalError::NotJson(format!(
                    "map key {other} is not a string"
                )));
            }
        };
        self.pending = Some(name);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        let name = self
            .pending
            .take()
            .ok_or_else(|| CanonicalError::NotJson("a map value without its key".into()))?;
        self.member(Cow::Owned(name), value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

/// Structs and struct variants both add a named member.
macro_rules! struct_like {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Object<'_> {
            type Ok = ();
            type Error = CanonicalError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), CanonicalError> {
                self.member(Cow::Borrowed(key), value)
            }
            fn end(self) -> Result<(), CanonicalError> {
                self.finish()
            }
        }
    )*};
}

struct_like!(SerializeStruct, SerializeStructVariant);
