//! A `Vec<T>` field: numbers are packed, everything else is one key per element.

use prost::DecodeError;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{
    DecodeContext, WireType, check_wire_type, decode_varint, encode_key, encode_varint,
    encoded_len_varint, key_len,
};

use super::{ProtoValue, decode_error};

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
