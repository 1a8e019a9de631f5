//! [`ProtoValue`] for the scalar types: varint integers and `bool`, range-checked narrow
//! integers, fixed-width floats, `String`, bytes, and `Box<T>` for recursive messages.

use prost::DecodeError;
use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType, encode_varint, encoded_len_varint};

use super::{ProtoValue, decode_error};
use crate::codegen::proto_text::ProtoFile;

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
