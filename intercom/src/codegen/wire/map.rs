//! A `map<K, V>` field: one length-delimited entry (key = 1, value = 2) per element.
//! As prost, an entry leaves out a key or value equal to its default, an empty message
//! value included.

use prost::DecodeError;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{
    DecodeContext, WireType, check_wire_type, decode_key, decode_varint, encode_key, encode_varint,
    encoded_len_varint, key_len, skip_field,
};

use super::{ProtoMap, ProtoValue, decode_error, singular};

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
