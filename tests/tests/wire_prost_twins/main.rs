//! intercom's hand-written protobuf encoding (`intercom::__private::{singular, optional,
//! repeated, map}`, behind `#[derive(intercom::Message)]` and the request messages of
//! `#[intercom::plugin]`) against prost-derive: for generated values, each message and
//! its `#[derive(prost::Message)]` twin (same field numbers and protobuf types) encode to
//! the same bytes, and each decodes the other's bytes to the same value.
//!
//! Map entries are compared as a multiset where a map is a `HashMap` (its iteration order,
//! and so its entry order on the wire, is not the twin's). The one difference by design
//! is a singular `-0.0`: intercom sends it (so it survives the round trip), prost drops it
//! (`a_singular_negative_zero_is_sent_where_prost_omits_it`); the byte-for-byte
//! properties generate `-0.0` only where both send it (repeated and optional fields).

mod strategies;
mod twins;

use std::collections::{BTreeMap, HashMap};

use intercom::prost::bytes::Bytes;
use intercom_tests::macro_api::{Everything, Node, Point};
use proptest::prelude::*;
use prost::Message;
use prost::encoding::{DecodeContext, decode_key, skip_field};

use strategies::{everything, extras, pack_request};
use twins::{everything_twin, extras_twin, pack_twin};

/// An enum with a negative and a large number (ten-byte and two-byte varints).
#[derive(intercom::Enumeration, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sign {
    /// The default.
    Zero,
    /// Negative: a ten-byte varint, as `int32` is.
    Minus = -3,
    /// More than one varint byte.
    Big = 1000,
}

/// The shapes `Everything` leaves out: other repeated and optional scalars, enums with
/// negative numbers, maps with other key and value types, repeated recursive messages.
#[derive(intercom::Message, Debug, Clone, PartialEq)]
pub struct Extras {
    /// Narrow integers, packed as `int32`.
    pub small: Vec<i8>,
    /// Narrow unsigned integers, packed as `uint32`.
    pub shorts: Vec<u16>,
    /// Packed `uint32`.
    pub unsigned: Vec<u32>,
    /// Packed `uint64`.
    pub wide: Vec<u64>,
    /// Packed `int32`.
    pub ints: Vec<i32>,
    /// Packed `float`.
    pub floats: Vec<f32>,
    /// Packed `bool`.
    pub flags: Vec<bool>,
    /// Repeated `bytes`.
    pub shared: Vec<Bytes>,
    /// `optional int32` from an `i16`.
    pub maybe_small: Option<i16>,
    /// `optional float`.
    pub maybe_float: Option<f32>,
    /// `optional bool`.
    pub maybe_flag: Option<bool>,
    /// `optional bytes`.
    pub maybe_blob: Option<Vec<u8>>,
    /// An optional enum.
    pub maybe_sign: Option<Sign>,
    /// An enum.
    pub sign: Sign,
    /// Packed enums.
    pub signs: Vec<Sign>,
    /// `map<int64, Point>`.
    pub by_id: BTreeMap<i64, Point>,
    /// `map<bool, bytes>`.
    pub by_flag: BTreeMap<bool, Vec<u8>>,
    /// `map<uint32, string>` from a `u8` key.
    pub by_byte: BTreeMap<u8, String>,
    /// `map<string, double>`.
    pub weights: BTreeMap<String, f64>,
    /// `map<int32, Sign>` from an `i16` key.
    pub signs_by_small: BTreeMap<i16, Sign>,
    /// Repeated recursive messages.
    pub nodes: Vec<Node>,
    /// A field after all the others (a wrong length above would shift it).
    pub last: u64,
}

/// The top-level fields of `bytes`, in wire order: each field number with the bytes of
/// the whole field (key included).
fn fields(bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut buf = bytes;
    let mut out = Vec::new();
    while !buf.is_empty() {
        let start = bytes.len() - buf.len();
        let (tag, wire_type) = decode_key(&mut buf).expect("a field key");
        skip_field(wire_type, tag, &mut buf, DecodeContext::default()).expect("a field");
        out.push((tag, bytes[start..bytes.len() - buf.len()].to_vec()));
    }
    out
}

/// `ours` and `prost`'s bytes are the same: byte for byte, except that the entries of the
/// `HashMap` fields numbered in `unordered` may come in another order.
fn assert_same_bytes(ours: &[u8], prost: &[u8], unordered: &[u32]) {
    if unordered.is_empty() {
        assert_eq!(ours, prost, "intercom's bytes, then prost's");
        return;
    }
    assert_eq!(ours.len(), prost.len(), "the encoded lengths");
    let split = |bytes: &[u8]| {
        let (mut maps, rest): (Vec<_>, Vec<_>) = fields(bytes)
            .into_iter()
            .partition(|(tag, _)| unordered.contains(tag));
        maps.sort();
        (rest, maps)
    };
    assert_eq!(split(ours), split(prost), "intercom's fields, then prost's");
}

/// The whole check for one value: `ours` encodes as `twin(ours)` does (and as long as its
/// `encoded_len` says), and each decodes the other's bytes to the same value.
fn assert_twins<M, T>(ours: &M, twin: fn(&M) -> T, unordered: &[u32])
where
    M: Message + Default,
    T: Message + Default + PartialEq + std::fmt::Debug,
{
    let expected = twin(ours);
    let our_bytes = ours.encode_to_vec();
    let prost_bytes = expected.encode_to_vec();
    assert_same_bytes(&our_bytes, &prost_bytes, unordered);
    assert_eq!(
        ours.encoded_len(),
        our_bytes.len(),
        "intercom's encoded_len"
    );
    assert_eq!(
        T::decode(&*our_bytes).expect("prost decodes intercom's bytes"),
        expected,
        "prost's reading of intercom's bytes"
    );
    let ours_again = M::decode(&*prost_bytes).expect("intercom decodes prost's bytes");
    assert_eq!(
        twin(&ours_again),
        expected,
        "intercom's reading of prost's bytes"
    );
}

/// Proptest's cases for one property (more than its default: they are cheap), and no
/// regression files (a failure prints its minimal input).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Every shape `Everything` holds (every scalar, strings, both bytes types, packed
    /// and unpacked repeated, optional, hash and B-tree maps, nested, optional, repeated
    /// and recursive messages, enums) encodes as its prost twin.
    #[test]
    fn everything_encodes_as_its_prost_twin(value in everything()) {
        // 21 `map` and 23 `points_by_name` are HashMaps.
        assert_twins(&value, everything_twin, &[21, 23]);
        prop_assert_eq!(
            Everything::decode(&*value.encode_to_vec()).expect("round trip"),
            value
        );
    }

    /// The shapes `Everything` leaves out (narrow and other packed scalars, optional
    /// scalars and bytes, enums with negative numbers, maps with integer, bool and
    /// narrow keys and message, bytes, string, double and enum values) encode as their
    /// prost twins, byte for byte.
    #[test]
    fn extras_encode_as_their_prost_twin(value in extras()) {
        assert_twins(&value, extras_twin, &[]);
        prop_assert_eq!(
            Extras::decode(&*value.encode_to_vec()).expect("round trip"),
            value
        );
    }

    /// The request message `#[intercom::plugin]` generates for `Echo::pack` (arguments
    /// numbered in order) encodes as its prost twin.
    #[test]
    fn a_plugin_request_message_encodes_as_its_prost_twin(value in everything()) {
        // 18 `map` is a HashMap.
        assert_twins(&pack_request(value), pack_twin, &[18]);
    }
}

/// A map value that is an empty message is left out of its entry, as prost leaves out any
/// map value equal to its default (it used to be sent as an empty field 2).
#[test]
fn an_empty_message_map_value_is_left_out_as_prost_does() {
    let value = Extras {
        by_id: BTreeMap::from([(0, Point::default()), (5, Point::default())]),
        ..Extras::default()
    };
    assert_twins(&value, extras_twin, &[]);
    // Field 16, two entries: the key alone (none for key 0).
    assert_eq!(
        value.encode_to_vec(),
        [0x82, 0x01, 0x00, 0x82, 0x01, 0x02, 0x08, 0x05]
    );
    let value = Everything {
        points_by_name: HashMap::from([("p".to_owned(), Point::default())]),
        ..Everything::default()
    };
    assert_twins(&value, everything_twin, &[]);
}

/// The one difference by design: a singular float field holding `-0.0` is sent (so the
/// sign survives), where prost compares with `0.0` and drops it. Both read the other's
/// bytes: prost reads intercom's `-0.0`, intercom reads prost's nothing as `0.0`.
#[test]
fn a_singular_negative_zero_is_sent_where_prost_omits_it() {
    let value = Everything {
        j: -0.0,
        ..Everything::default()
    };
    let ours = value.encode_to_vec();
    let prost = everything_twin(&value).encode_to_vec();
    let negative_zero = [&[0x51][..], &(-0.0f64).to_le_bytes()].concat();
    // Field 10 (`j`, a double) first, then what prost writes too (the `point` field).
    assert_eq!(ours, [&negative_zero[..], &prost[..]].concat());
    let read = twins::Everything::decode(&*ours).expect("prost reads it");
    assert!(read.j == 0.0 && read.j.is_sign_negative());
    let back = Everything::decode(&*prost).expect("intercom reads it");
    assert!(back.j == 0.0 && back.j.is_sign_positive());
}
