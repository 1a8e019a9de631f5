//! [`ProtoValue`](super::ProtoValue) methods for message types (used by
//! `#[derive(intercom::Message)]`).

use prost::DecodeError;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType, encode_varint, encoded_len_varint};

/// [`ProtoValue::encode_value`](super::ProtoValue::encode_value) of a message: its length,
/// then its fields.
pub fn encode<M: prost::Message>(msg: &M, buf: &mut impl BufMut) {
    encode_varint(msg.encoded_len() as u64, buf);
    msg.encode_raw(buf);
}

/// [`ProtoValue::value_len`](super::ProtoValue::value_len) of a message.
pub fn len<M: prost::Message>(msg: &M) -> usize {
    let len = msg.encoded_len();
    encoded_len_varint(len as u64) + len
}

/// [`ProtoValue::merge_value`](super::ProtoValue::merge_value) of a message (depth-limited
/// as prost's).
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
