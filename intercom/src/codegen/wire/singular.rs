//! A field holding one value, omitted when it is the default (proto3 implicit presence).

use prost::DecodeError;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, check_wire_type, encode_key, key_len};

use super::ProtoValue;

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
