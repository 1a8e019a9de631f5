//! An `Option<T>` field: sent whenever it is `Some`, even holding a default
//! (proto3 `optional`, or a message field).

use prost::DecodeError;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, check_wire_type, encode_key, key_len};

use super::ProtoValue;

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
