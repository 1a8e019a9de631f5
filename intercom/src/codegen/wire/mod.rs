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
//!
//! The value trait is here; its scalar impls are in `scalars.rs`, the map trait in
//! `proto_map.rs`, the errors in `errors.rs`, each field module in a file of its name.

mod errors;
pub mod map;
pub mod message_value;
pub mod optional;
mod proto_map;
pub mod repeated;
mod scalars;
pub mod singular;
#[cfg(test)]
mod tests;

use prost::DecodeError;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, skip_field};

pub use self::errors::{decode_error, unknown_enum_value};
pub use self::proto_map::ProtoMap;
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
