//! Tests of the field encodings against prost-derive, and of the scalar edge cases.

use std::collections::BTreeMap;

use prost::DecodeError;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};

use super::{ProtoValue, map, optional, repeated, singular, skip};

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
