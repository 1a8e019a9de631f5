//! Protobuf encoding of the Rust types that cross the plugin boundary.
//!
//! [`ProtoValue`] is one *value* (a scalar, a string, bytes, a message or an enum); the
//! field modules ([`singular`], [`optional`], [`repeated`], [`map`]) encode a value or a
//! collection of values as one field. `#[intercom::plugin]` and
//! `#[derive(intercom::Message)]` pick the field module from the Rust type's shape
//! (`Option<T>`, `Vec<T>`, `HashMap<K, V>`, anything else), so the generated
//! [`prost::Message`] impls never name `prost`'s derive and need no `prost` dependency.
//!
//! The encoding is exactly prost's (proto3): defaults of singular scalars are not sent,
//! repeated scalars are packed (and read packed or not), maps are repeated entry
//! messages with key 1 and value 2, each left out when it is its default (an empty message
//! value too). One difference by design: a singular `-0.0` is sent (prost drops it).
//! `tests/tests/wire_prost_twins/` checks this against prost-derive byte for byte.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};

use prost::DecodeError;
use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    self, DecodeContext, WireType, check_wire_type, decode_key, decode_varint, encode_key,
    encode_varint, encoded_len_varint, key_len, skip_field,
};

use super::proto_text::{MessageBuilder, ProtoFile};

/// A Rust type that is one protobuf value.
///
/// Implemented for the integers (`i8`–`i64`, `u8`–`u64`), `f32`, `f64`, `bool`, `String`,
/// `Vec<u8>`, `Bytes`, `Box<T>`, and by `#[derive(intercom::Message)]` and
/// `#[derive(intercom::Enumeration)]`. Collections (`Vec<T>`, `Option<T>`, maps) are field
/// shapes, not values: the macros encode them with the field modules.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross the plugin boundary",
    label = "not a type intercom can encode",
    note = "supported: i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, bool, String, Vec<u8>, Bytes, Vec<T>, Option<T>, HashMap<K, V>, BTreeMap<K, V>, Box<T>, (), and types with #[derive(intercom::Message)] or #[derive(intercom::Enumeration)]"
)]
pub trait ProtoValue: Default + Send + Sync + 'static {
    /// The wire type of one value.
    const WIRE_TYPE: WireType;

    /// The type's name in `.proto` text (`int32`, `string`, `Point`), registering the
    /// definitions it needs in `file`.
    fn proto_type(file: &mut ProtoFile) -> String;

    /// Whether a singular field holding this value is omitted (proto3 implicit presence).
    /// Messages are always sent.
    fn is_default(&self) -> bool;

    /// Writes the value without a key (length-delimited values with their length).
    fn encode_value(&self, buf: &mut impl BufMut);

    /// The length [`encode_value`](Self::encode_value) writes.
    fn value_len(&self) -> usize;

    /// Reads one value (whose key, of wire type [`WIRE_TYPE`](Self::WIRE_TYPE), was read)
    /// into `self`: scalars are replaced, messages merged.
    ///
    /// # Errors
    /// Malformed or out-of-range input.
    fn merge_value(&mut self, buf: &mut impl Buf, ctx: DecodeContext) -> Result<(), DecodeError>;

    // The field operations, as provided methods: generated code calls them as
    // `<T as ProtoValue>::…`, so a type that is not a `ProtoValue` gets one error (the
    // same diagnostic at the same span, deduplicated), not one per generic function.

    /// The default of a singular field.
    fn field_default() -> Self {
        Self::default()
    }
    /// [`singular::encode`].
    fn encode_singular(tag: u32, value: &Self, buf: &mut impl BufMut) {
        singular::encode(tag, value, buf);
    }
    /// [`singular::merge`].
    ///
    /// # Errors
    /// As [`singular::merge`].
    fn merge_singular(
        wire_type: WireType,
        value: &mut Self,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        singular::merge(wire_type, value, buf, ctx)
    }
    /// [`singular::encoded_len`].
    fn singular_len(tag: u32, value: &Self) -> usize {
        singular::encoded_len(tag, value)
    }
    /// [`optional::encode`].
    fn encode_optional(tag: u32, value: &Option<Self>, buf: &mut impl BufMut) {
        optional::encode(tag, value, buf);
    }
    /// [`optional::merge`].
    ///
    /// # Errors
    /// As [`optional::merge`].
    fn merge_optional(
        wire_type: WireType,
        value: &mut Option<Self>,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        optional::merge(wire_type, value, buf, ctx)
    }
    /// [`optional::encoded_len`].
    fn optional_len(tag: u32, value: &Option<Self>) -> usize {
        optional::encoded_len(tag, value)
    }
    /// [`repeated::encode`].
    fn encode_repeated(tag: u32, values: &[Self], buf: &mut impl BufMut) {
        repeated::encode(tag, values, buf);
    }
    /// [`repeated::merge`].
    ///
    /// # Errors
    /// As [`repeated::merge`].
    fn merge_repeated(
        wire_type: WireType,
        values: &mut Vec<Self>,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        repeated::merge(wire_type, values, buf, ctx)
    }
    /// [`repeated::encoded_len`].
    fn repeated_len(tag: u32, values: &[Self]) -> usize {
        repeated::encoded_len(tag, values)
    }
    /// Describes a singular field in the `.proto` text.
    fn describe_singular(message: &mut MessageBuilder<'_>, name: &str, number: u32, doc: &[&str]) {
        message.singular::<Self>(name, number, doc);
    }
    /// Describes an `optional` field in the `.proto` text.
    fn describe_optional(message: &mut MessageBuilder<'_>, name: &str, number: u32, doc: &[&str]) {
        message.optional::<Self>(name, number, doc);
    }
    /// Describes a `repeated` field in the `.proto` text.
    fn describe_repeated(message: &mut MessageBuilder<'_>, name: &str, number: u32, doc: &[&str]) {
        message.repeated::<Self>(name, number, doc);
    }
}

/// A decode error with a description (prost deprecated the constructor for users, but it
/// is the only way to report a value that is well-formed protobuf yet invalid here).
#[cold]
pub fn decode_error(description: impl Into<std::borrow::Cow<'static, str>>) -> DecodeError {
    #[allow(deprecated)]
    DecodeError::new(description)
}

/// The error for an enum number no variant of `name` has.
#[cold]
pub fn unknown_enum_value(name: &'static str, value: i32) -> DecodeError {
    decode_error(format!("invalid enumeration value {value} for {name}"))
}

macro_rules! varint_value {
    ($ty:ty, $proto:literal, $module:ident, |$v:ident| $to_u64:expr) => {
        impl ProtoValue for $ty {
            const WIRE_TYPE: WireType = WireType::Varint;
            fn proto_type(_: &mut ProtoFile) -> String {
                $proto.to_owned()
            }
            fn is_default(&self) -> bool {
                *self == <$ty>::default()
            }
            fn encode_value(&self, buf: &mut impl BufMut) {
                let $v = *self;
                encode_varint($to_u64, buf);
            }
            fn value_len(&self) -> usize {
                let $v = *self;
                encoded_len_varint($to_u64)
            }
            fn merge_value(
                &mut self,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                encoding::$module::merge(WireType::Varint, self, buf, ctx)
            }
        }
    };
}

varint_value!(i32, "int32", int32, |v| v as i64 as u64);
varint_value!(i64, "int64", int64, |v| v as u64);
varint_value!(u32, "uint32", uint32, |v| u64::from(v));
varint_value!(u64, "uint64", uint64, |v| v);
varint_value!(bool, "bool", bool, |v| u64::from(v));

/// Small integers travel as `int32`/`uint32` and are range-checked on decode.
macro_rules! narrow_value {
    ($ty:ty, $wide:ty, $proto:literal) => {
        impl ProtoValue for $ty {
            const WIRE_TYPE: WireType = WireType::Varint;
            fn proto_type(_: &mut ProtoFile) -> String {
                $proto.to_owned()
            }
            fn is_default(&self) -> bool {
                *self == 0
            }
            fn encode_value(&self, buf: &mut impl BufMut) {
                <$wide>::from(*self).encode_value(buf);
            }
            fn value_len(&self) -> usize {
                <$wide>::from(*self).value_len()
            }
            fn merge_value(
                &mut self,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                let mut wide: $wide = 0;
                wide.merge_value(buf, ctx)?;
                *self = <$ty>::try_from(wide).map_err(|_| {
                    decode_error(format!(
                        concat!("{} is out of range for ", stringify!($ty)),
                        wide
                    ))
                })?;
                Ok(())
            }
        }
    };
}

narrow_value!(i8, i32, "int32");
narrow_value!(i16, i32, "int32");
narrow_value!(u8, u32, "uint32");
narrow_value!(u16, u32, "uint32");

macro_rules! fixed_value {
    ($ty:ty, $proto:literal, $module:ident, $wire:ident, $put:ident, $len:literal) => {
        impl ProtoValue for $ty {
            const WIRE_TYPE: WireType = WireType::$wire;
            fn proto_type(_: &mut ProtoFile) -> String {
                $proto.to_owned()
            }
            /// Compares bits, so `-0.0` is sent (prost drops it).
            fn is_default(&self) -> bool {
                self.to_bits() == 0
            }
            fn encode_value(&self, buf: &mut impl BufMut) {
                buf.$put(*self);
            }
            fn value_len(&self) -> usize {
                $len
            }
            fn merge_value(
                &mut self,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                encoding::$module::merge(WireType::$wire, self, buf, ctx)
            }
        }
    };
}

fixed_value!(f32, "float", float, ThirtyTwoBit, put_f32_le, 4);
fixed_value!(f64, "double", double, SixtyFourBit, put_f64_le, 8);

impl ProtoValue for String {
    const WIRE_TYPE: WireType = WireType::LengthDelimited;
    fn proto_type(_: &mut ProtoFile) -> String {
        "string".to_owned()
    }
    fn is_default(&self) -> bool {
        self.is_empty()
    }
    fn encode_value(&self, buf: &mut impl BufMut) {
        encode_varint(self.len() as u64, buf);
        buf.put_slice(self.as_bytes());
    }
    fn value_len(&self) -> usize {
        encoded_len_varint(self.len() as u64) + self.len()
    }
    fn merge_value(&mut self, buf: &mut impl Buf, ctx: DecodeContext) -> Result<(), DecodeError> {
        encoding::string::merge(WireType::LengthDelimited, self, buf, ctx)
    }
}

macro_rules! bytes_value {
    ($ty:ty) => {
        impl ProtoValue for $ty {
            const WIRE_TYPE: WireType = WireType::LengthDelimited;
            fn proto_type(_: &mut ProtoFile) -> String {
                "bytes".to_owned()
            }
            fn is_default(&self) -> bool {
                self.is_empty()
            }
            fn encode_value(&self, buf: &mut impl BufMut) {
                encode_varint(self.len() as u64, buf);
                buf.put_slice(self);
            }
            fn value_len(&self) -> usize {
                encoded_len_varint(self.len() as u64) + self.len()
            }
            fn merge_value(
                &mut self,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                encoding::bytes::merge(WireType::LengthDelimited, self, buf, ctx)
            }
        }
    };
}

bytes_value!(Vec<u8>);
bytes_value!(Bytes);

/// For recursive messages (`next: Option<Box<Node>>`).
impl<T: ProtoValue> ProtoValue for Box<T> {
    const WIRE_TYPE: WireType = T::WIRE_TYPE;
    fn proto_type(file: &mut ProtoFile) -> String {
        T::proto_type(file)
    }
    fn is_default(&self) -> bool {
        (**self).is_default()
    }
    fn encode_value(&self, buf: &mut impl BufMut) {
        (**self).encode_value(buf);
    }
    fn value_len(&self) -> usize {
        (**self).value_len()
    }
    fn merge_value(&mut self, buf: &mut impl Buf, ctx: DecodeContext) -> Result<(), DecodeError> {
        (**self).merge_value(buf, ctx)
    }
}

/// [`ProtoValue`] methods for message types (used by `#[derive(intercom::Message)]`).
pub mod message_value {
    use super::*;

    /// [`ProtoValue::encode_value`] of a message: its length, then its fields.
    pub fn encode<M: prost::Message>(msg: &M, buf: &mut impl BufMut) {
        encode_varint(msg.encoded_len() as u64, buf);
        msg.encode_raw(buf);
    }

    /// [`ProtoValue::value_len`] of a message.
    pub fn len<M: prost::Message>(msg: &M) -> usize {
        let len = msg.encoded_len();
        encoded_len_varint(len as u64) + len
    }

    /// [`ProtoValue::merge_value`] of a message (depth-limited as prost's).
    ///
    /// # Errors
    /// Malformed input or recursion too deep.
    pub fn merge<M: prost::Message>(
        msg: &mut M,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        encoding::message::merge(WireType::LengthDelimited, msg, buf, ctx)
    }
}

/// A field holding one value, omitted when it is the default (proto3 implicit presence).
pub mod singular {
    use super::*;

    /// Writes the field unless `value` is the default.
    pub fn encode<T: ProtoValue>(tag: u32, value: &T, buf: &mut impl BufMut) {
        if !value.is_default() {
            encode_key(tag, T::WIRE_TYPE, buf);
            value.encode_value(buf);
        }
    }

    /// The length [`encode`] writes.
    pub fn encoded_len<T: ProtoValue>(tag: u32, value: &T) -> usize {
        if value.is_default() {
            0
        } else {
            key_len(tag) + value.value_len()
        }
    }

    /// Reads one occurrence of the field.
    ///
    /// # Errors
    /// A wrong wire type or malformed input.
    pub fn merge<T: ProtoValue>(
        wire_type: WireType,
        value: &mut T,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        check_wire_type(T::WIRE_TYPE, wire_type)?;
        value.merge_value(buf, ctx)
    }
}

/// An `Option<T>` field: sent whenever it is `Some`, even holding a default
/// (proto3 `optional`, or a message field).
pub mod optional {
    use super::*;

    /// Writes the field if `value` is `Some`.
    pub fn encode<T: ProtoValue>(tag: u32, value: &Option<T>, buf: &mut impl BufMut) {
        if let Some(value) = value {
            encode_key(tag, T::WIRE_TYPE, buf);
            value.encode_value(buf);
        }
    }

    /// The length [`encode`] writes.
    pub fn encoded_len<T: ProtoValue>(tag: u32, value: &Option<T>) -> usize {
        value.as_ref().map_or(0, |v| key_len(tag) + v.value_len())
    }

    /// Reads one occurrence of the field.
    ///
    /// # Errors
    /// A wrong wire type or malformed input.
    pub fn merge<T: ProtoValue>(
        wire_type: WireType,
        value: &mut Option<T>,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        check_wire_type(T::WIRE_TYPE, wire_type)?;
        value.get_or_insert_with(T::default).merge_value(buf, ctx)
    }
}

/// A `Vec<T>` field: numbers are packed, everything else is one key per element.
pub mod repeated {
    use super::*;

    fn packed<T: ProtoValue>() -> bool {
        !matches!(T::WIRE_TYPE, WireType::LengthDelimited)
    }

    /// Writes the field (nothing for an empty vector).
    pub fn encode<T: ProtoValue>(tag: u32, values: &[T], buf: &mut impl BufMut) {
        if values.is_empty() {
            return;
        }
        if packed::<T>() {
            encode_key(tag, WireType::LengthDelimited, buf);
            encode_varint(values.iter().map(T::value_len).sum::<usize>() as u64, buf);
            for value in values {
                value.encode_value(buf);
            }
        } else {
            for value in values {
                encode_key(tag, T::WIRE_TYPE, buf);
                value.encode_value(buf);
            }
        }
    }

    /// The length [`encode`] writes.
    pub fn encoded_len<T: ProtoValue>(tag: u32, values: &[T]) -> usize {
        if values.is_empty() {
            return 0;
        }
        let data: usize = values.iter().map(T::value_len).sum();
        if packed::<T>() {
            key_len(tag) + encoded_len_varint(data as u64) + data
        } else {
            key_len(tag) * values.len() + data
        }
    }

    /// Reads one occurrence of the field: one element, or a packed run of numbers.
    ///
    /// # Errors
    /// A wrong wire type or malformed input.
    pub fn merge<T: ProtoValue>(
        wire_type: WireType,
        values: &mut Vec<T>,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if packed::<T>() && wire_type == WireType::LengthDelimited {
            let len = decode_varint(buf)?;
            let len = usize::try_from(len)
                .ok()
                .filter(|len| *len <= buf.remaining())
                .ok_or_else(|| decode_error("buffer underflow"))?;
            let limit = buf.remaining() - len;
            while buf.remaining() > limit {
                let mut value = T::default();
                value.merge_value(buf, ctx.clone())?;
                values.push(value);
            }
            if buf.remaining() != limit {
                return Err(decode_error("delimited length exceeded"));
            }
            return Ok(());
        }
        check_wire_type(T::WIRE_TYPE, wire_type)?;
        let mut value = T::default();
        value.merge_value(buf, ctx)?;
        values.push(value);
        Ok(())
    }
}

/// A map type usable as a `map<K, V>` field.
pub trait ProtoMap: Default + Send + Sync + 'static {
    /// The key type (an integer, `bool` or `String`).
    type Key: ProtoValue;
    /// The value type.
    type Value: ProtoValue;
    /// The entries, in the map's iteration order.
    fn entries(&self) -> impl Iterator<Item = (&Self::Key, &Self::Value)>;
    /// Inserts one entry (a later duplicate key wins, as in protobuf).
    fn insert_entry(&mut self, key: Self::Key, value: Self::Value);

    /// [`map::encode`] (a provided method for the reason given on [`ProtoValue`]).
    fn encode_map(tag: u32, map: &Self, buf: &mut impl BufMut) {
        map::encode(tag, map, buf);
    }
    /// [`map::merge`].
    ///
    /// # Errors
    /// As [`map::merge`].
    fn merge_map(
        wire_type: WireType,
        map: &mut Self,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        map::merge(wire_type, map, buf, ctx)
    }
    /// [`map::encoded_len`].
    fn map_len(tag: u32, map: &Self) -> usize {
        map::encoded_len(tag, map)
    }
    /// Describes the field in the `.proto` text.
    fn describe_map(message: &mut MessageBuilder<'_>, name: &str, number: u32, doc: &[&str]) {
        message.map::<Self>(name, number, doc);
    }
}

impl<K, V, S> ProtoMap for HashMap<K, V, S>
where
    K: ProtoValue + Eq + Hash,
    V: ProtoValue,
    S: BuildHasher + Default + Send + Sync + 'static,
{
    type Key = K;
    type Value = V;
    fn entries(&self) -> impl Iterator<Item = (&K, &V)> {
        self.iter()
    }
    fn insert_entry(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
}

impl<K: ProtoValue + Ord, V: ProtoValue> ProtoMap for BTreeMap<K, V> {
    type Key = K;
    type Value = V;
    fn entries(&self) -> impl Iterator<Item = (&K, &V)> {
        self.iter()
    }
    fn insert_entry(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
}

/// A `map<K, V>` field: one length-delimited entry (key = 1, value = 2) per element.
/// As prost, an entry leaves out a key or value equal to its default, an empty message
/// value included.
pub mod map {
    use super::*;

    /// Whether an entry leaves `value` out: it is the default, or an empty message (a
    /// message is never the default of a singular field, but is of a map value: its
    /// encoding is then its zero length alone).
    fn omitted<T: ProtoValue>(value: &T) -> bool {
        value.is_default() || (T::WIRE_TYPE == WireType::LengthDelimited && value.value_len() == 1)
    }

    /// The length [`encode_part`] writes.
    fn part_len<T: ProtoValue>(tag: u32, value: &T) -> usize {
        if omitted(value) {
            0
        } else {
            key_len(tag) + value.value_len()
        }
    }

    /// Writes the key or value of an entry, unless [`omitted`].
    fn encode_part<T: ProtoValue>(tag: u32, value: &T, buf: &mut impl BufMut) {
        if !omitted(value) {
            encode_key(tag, T::WIRE_TYPE, buf);
            value.encode_value(buf);
        }
    }

    fn entry_len<M: ProtoMap>(key: &M::Key, value: &M::Value) -> usize {
        part_len(1, key) + part_len(2, value)
    }

    /// Writes the field (nothing for an empty map).
    pub fn encode<M: ProtoMap>(tag: u32, map: &M, buf: &mut impl BufMut) {
        for (key, value) in map.entries() {
            encode_key(tag, WireType::LengthDelimited, buf);
            encode_varint(entry_len::<M>(key, value) as u64, buf);
            encode_part(1, key, buf);
            encode_part(2, value, buf);
        }
    }

    /// The length [`encode`] writes.
    pub fn encoded_len<M: ProtoMap>(tag: u32, map: &M) -> usize {
        map.entries()
            .map(|(key, value)| {
                let len = entry_len::<M>(key, value);
                key_len(tag) + encoded_len_varint(len as u64) + len
            })
            .sum()
    }

    /// Reads one entry.
    ///
    /// # Errors
    /// A wrong wire type or malformed input.
    pub fn merge<M: ProtoMap>(
        wire_type: WireType,
        map: &mut M,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        check_wire_type(WireType::LengthDelimited, wire_type)?;
        let len = decode_varint(buf)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= buf.remaining())
            .ok_or_else(|| decode_error("buffer underflow"))?;
        let limit = buf.remaining() - len;
        let mut key = M::Key::default();
        let mut value = M::Value::default();
        while buf.remaining() > limit {
            let (tag, wire_type) = decode_key(buf)?;
            match tag {
                1 => singular::merge(wire_type, &mut key, buf, ctx.clone())?,
                2 => singular::merge(wire_type, &mut value, buf, ctx.clone())?,
                _ => skip_field(wire_type, tag, buf, ctx.clone())?,
            }
        }
        if buf.remaining() != limit {
            return Err(decode_error("delimited length exceeded"));
        }
        map.insert_entry(key, value);
        Ok(())
    }
}

/// Skips a field this side does not know (a newer peer's), as protobuf requires.
///
/// # Errors
/// Malformed input.
pub fn skip(
    tag: u32,
    wire_type: WireType,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    skip_field(wire_type, tag, buf, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message with one field of each shape, written the way the macros write them.
    #[derive(Debug, Default, PartialEq)]
    struct Sample {
        n: i32,
        s: String,
        o: Option<u64>,
        r: Vec<i64>,
        m: BTreeMap<String, f64>,
    }

    impl prost::Message for Sample {
        fn encode_raw(&self, buf: &mut impl BufMut) {
            singular::encode(1, &self.n, buf);
            singular::encode(2, &self.s, buf);
            optional::encode(3, &self.o, buf);
            repeated::encode(4, &self.r, buf);
            map::encode(5, &self.m, buf);
        }
        fn merge_field(
            &mut self,
            tag: u32,
            wire_type: WireType,
            buf: &mut impl Buf,
            ctx: DecodeContext,
        ) -> Result<(), DecodeError> {
            match tag {
                1 => singular::merge(wire_type, &mut self.n, buf, ctx),
                2 => singular::merge(wire_type, &mut self.s, buf, ctx),
                3 => optional::merge(wire_type, &mut self.o, buf, ctx),
                4 => repeated::merge(wire_type, &mut self.r, buf, ctx),
                5 => map::merge(wire_type, &mut self.m, buf, ctx),
                _ => skip(tag, wire_type, buf, ctx),
            }
        }
        fn encoded_len(&self) -> usize {
            singular::encoded_len(1, &self.n)
                + singular::encoded_len(2, &self.s)
                + optional::encoded_len(3, &self.o)
                + repeated::encoded_len(4, &self.r)
                + map::encoded_len(5, &self.m)
        }
        fn clear(&mut self) {
            *self = Self::default();
        }
    }

    /// The same message as prost-derive writes it.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Reference {
        #[prost(int32, tag = "1")]
        n: i32,
        #[prost(string, tag = "2")]
        s: String,
        #[prost(uint64, optional, tag = "3")]
        o: Option<u64>,
        #[prost(int64, repeated, tag = "4")]
        r: Vec<i64>,
        #[prost(btree_map = "string, double", tag = "5")]
        m: BTreeMap<String, f64>,
    }

    #[test]
    fn bytes_match_prost_derive() {
        use prost::Message as _;
        let sample = Sample {
            n: -5,
            s: "hé".into(),
            o: Some(0),
            r: vec![1, -1, 300],
            m: [("a".to_owned(), 1.5), ("b".to_owned(), 0.0)].into(),
        };
        let reference = Reference {
            n: -5,
            s: "hé".into(),
            o: Some(0),
            r: vec![1, -1, 300],
            m: [("a".to_owned(), 1.5), ("b".to_owned(), 0.0)].into(),
        };
        let bytes = sample.encode_to_vec();
        assert_eq!(bytes, reference.encode_to_vec());
        assert_eq!(bytes.len(), sample.encoded_len());
        assert_eq!(Sample::decode(&*bytes).unwrap(), sample);
        assert_eq!(Sample::default().encode_to_vec(), Vec::<u8>::new());
    }

    #[test]
    fn reads_unpacked_numbers_and_skips_unknown_fields() {
        use prost::Message as _;
        // Field 4 unpacked twice (varint 7, varint 8), then an unknown field 9.
        let bytes = [0x20, 7, 0x20, 8, 0x4a, 1, b'x'];
        let sample = Sample::decode(&bytes[..]).unwrap();
        assert_eq!(sample.r, vec![7, 8]);
    }

    #[test]
    fn narrow_integers_are_range_checked() {
        let mut buf = Vec::new();
        300i32.encode_value(&mut buf);
        let mut small = 0u8;
        let err = small
            .merge_value(&mut &buf[..], DecodeContext::default())
            .unwrap_err();
        assert!(err.to_string().contains("out of range for u8"), "{err}");
    }

    #[test]
    fn negative_zero_is_sent() {
        assert!(!(-0.0f64).is_default());
        assert!(0.0f64.is_default());
    }
}
