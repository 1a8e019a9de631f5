//! Proptest strategies for the intercom messages.

use intercom::prost::bytes::Bytes;
use intercom_tests::macro_api::__echo_messages::PackRequest;
use intercom_tests::macro_api::{Color, Everything, Node, Point};
use proptest::prelude::*;

use crate::{Extras, Sign};

/// Floats without NaN (NaN != NaN); infinities, subnormals and -0.0 included.
pub fn f32_any() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("not NaN", |v| !v.is_nan())
}

pub fn f64_any() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("not NaN", |v| !v.is_nan())
}

/// As [`f32_any`] without -0.0, for fields where prost drops it (singular fields, map
/// values): see `a_singular_negative_zero_is_sent_where_prost_omits_it`.
pub fn f32_singular() -> impl Strategy<Value = f32> {
    f32_any().prop_map(|v| if v == 0.0 { 0.0 } else { v })
}

pub fn f64_singular() -> impl Strategy<Value = f64> {
    f64_any().prop_map(|v| if v == 0.0 { 0.0 } else { v })
}

pub fn text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

pub fn blob() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..16)
}

pub fn shared() -> impl Strategy<Value = Bytes> {
    blob().prop_map(Bytes::from)
}

pub fn point() -> impl Strategy<Value = Point> {
    (
        any::<i32>(),
        any::<i32>(),
        proptest::option::of(text()),
        prop::collection::vec(text(), 0..3),
    )
        .prop_map(|(x, y, label, tags)| Point { x, y, label, tags })
}

/// Points that are often empty (all fields default), as in map values prost leaves out.
pub fn point_often_empty() -> impl Strategy<Value = Point> {
    prop_oneof![
        Just(Point::default()),
        Just(Point {
            label: Some(String::new()),
            ..Point::default()
        }),
        point(),
    ]
}

pub fn color() -> impl Strategy<Value = Color> {
    prop_oneof![Just(Color::Red), Just(Color::Green), Just(Color::Blue)]
}

pub fn sign() -> impl Strategy<Value = Sign> {
    prop_oneof![Just(Sign::Zero), Just(Sign::Minus), Just(Sign::Big)]
}

pub fn node() -> impl Strategy<Value = Node> {
    any::<u32>()
        .prop_map(|value| Node { value, next: None })
        .prop_recursive(4, 8, 1, |inner| {
            (any::<u32>(), proptest::option::of(inner)).prop_map(|(value, next)| Node {
                value,
                next: next.map(Box::new),
            })
        })
}

pub fn everything() -> impl Strategy<Value = Everything> {
    let scalars = (
        (
            any::<i8>(),
            any::<i16>(),
            any::<i32>(),
            any::<i64>(),
            any::<u8>(),
            any::<u16>(),
            any::<u32>(),
            any::<u64>(),
        ),
        (
            f32_singular(),
            f64_singular(),
            any::<bool>(),
            text(),
            blob(),
            shared(),
        ),
    );
    let collections = (
        prop::collection::vec(any::<i64>(), 0..5),
        prop::collection::vec(f64_any(), 0..5),
        prop::collection::vec(text(), 0..4),
        prop::collection::vec(blob(), 0..4),
        proptest::option::of(any::<u64>()),
        proptest::option::of(text()),
        prop::collection::hash_map(text(), any::<i64>(), 0..4),
        prop::collection::btree_map(any::<u32>(), color(), 0..4),
    );
    let messages = (
        prop::collection::hash_map(text(), point_often_empty(), 0..4),
        point(),
        proptest::option::of(point()),
        prop::collection::vec(point_often_empty(), 0..3),
        color(),
        prop::collection::vec(color(), 0..4),
        proptest::option::of(node()),
    );
    (scalars, collections, messages).prop_map(
        |(
            ((a, b, c, d, e, f, g, h), (i, j, k, s, bytes, shared)),
            (numbers, floats, strings, blobs, maybe, maybe_text, map, ordered),
            (points_by_name, point, maybe_point, points, color, colors, list),
        )| Everything {
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
            i,
            j,
            k,
            s,
            bytes,
            shared,
            numbers,
            floats,
            strings,
            blobs,
            maybe,
            maybe_text,
            map,
            ordered,
            points_by_name,
            point,
            maybe_point,
            points,
            color,
            colors,
            list,
        },
    )
}

pub fn extras() -> impl Strategy<Value = Extras> {
    let repeated = (
        prop::collection::vec(any::<i8>(), 0..5),
        prop::collection::vec(any::<u16>(), 0..5),
        prop::collection::vec(any::<u32>(), 0..5),
        prop::collection::vec(any::<u64>(), 0..5),
        prop::collection::vec(any::<i32>(), 0..5),
        prop::collection::vec(f32_any(), 0..5),
        prop::collection::vec(any::<bool>(), 0..5),
        prop::collection::vec(shared(), 0..3),
    );
    let optional = (
        proptest::option::of(any::<i16>()),
        proptest::option::of(f32_any()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(blob()),
        proptest::option::of(sign()),
        sign(),
        prop::collection::vec(sign(), 0..4),
    );
    let maps = (
        prop::collection::btree_map(any::<i64>(), point_often_empty(), 0..4),
        prop::collection::btree_map(any::<bool>(), blob(), 0..3),
        prop::collection::btree_map(any::<u8>(), text(), 0..4),
        prop::collection::btree_map(text(), f64_singular(), 0..4),
        prop::collection::btree_map(any::<i16>(), sign(), 0..4),
        prop::collection::vec(node(), 0..3),
        any::<u64>(),
    );
    (repeated, optional, maps).prop_map(
        |(
            (small, shorts, unsigned, wide, ints, floats, flags, shared),
            (maybe_small, maybe_float, maybe_flag, maybe_blob, maybe_sign, sign, signs),
            (by_id, by_flag, by_byte, weights, signs_by_small, nodes, last),
        )| Extras {
            small,
            shorts,
            unsigned,
            wide,
            ints,
            floats,
            flags,
            shared,
            maybe_small,
            maybe_float,
            maybe_flag,
            maybe_blob,
            maybe_sign,
            sign,
            signs,
            by_id,
            by_flag,
            by_byte,
            weights,
            signs_by_small,
            nodes,
            last,
        },
    )
}

/// `Echo::pack`'s request holding the fields of `v` (generated as an [`Everything`]: the
/// request type has no `Debug`, which proptest needs).
pub fn pack_request(v: Everything) -> PackRequest {
    PackRequest {
        a: v.a,
        b: v.b,
        c: v.c,
        d: v.d,
        e: v.e,
        f: v.f,
        g: v.g,
        h: v.h,
        i: v.i,
        j: v.j,
        k: v.k,
        s: v.s,
        bytes: v.bytes,
        shared: v.shared,
        numbers: v.numbers,
        strings: v.strings,
        maybe: v.maybe,
        map: v.map,
        ordered: v.ordered,
        point: v.point,
        maybe_point: v.maybe_point,
        color: v.color,
    }
}
