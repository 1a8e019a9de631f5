//! Every type `#[intercom::plugin]` supports crosses a real plugin process and comes back
//! equal: as a message field (`echo`), as an argument (`pack`) and as a result. Values
//! come from proptest strategies covering the edges (negative numbers, empty and unicode
//! strings, empty collections, nested and recursive messages).

mod macro_common;

use std::collections::{BTreeMap, HashMap};

use intercom::prost::bytes::Bytes;
use intercom_tests::macro_api::{Color, Echo as _, EchoClient, Everything, Node, Point};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn point() -> impl Strategy<Value = Point> {
    (
        any::<i32>(),
        any::<i32>(),
        any::<Option<String>>(),
        prop::collection::vec(".{0,8}", 0..4),
    )
        .prop_map(|(x, y, label, tags)| Point { x, y, label, tags })
}

fn color() -> impl Strategy<Value = Color> {
    prop_oneof![Just(Color::Red), Just(Color::Green), Just(Color::Blue)]
}

/// Floats without NaN (NaN != NaN); -0.0, infinities and subnormals included.
fn f32_value() -> impl Strategy<Value = f32> {
    prop::num::f32::ANY.prop_filter("not NaN", |f| !f.is_nan())
}

fn f64_value() -> impl Strategy<Value = f64> {
    prop::num::f64::ANY.prop_filter("not NaN", |f| !f.is_nan())
}

fn list() -> impl Strategy<Value = Option<Node>> {
    prop::collection::vec(any::<u32>(), 0..5).prop_map(|values| {
        values.into_iter().rev().fold(None, |next, value| {
            Some(Node {
                value,
                next: next.map(Box::new),
            })
        })
    })
}

fn everything() -> impl Strategy<Value = Everything> {
    let scalars = (
        any::<i8>(),
        any::<i16>(),
        any::<i32>(),
        any::<i64>(),
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        any::<u64>(),
        f32_value(),
        f64_value(),
        any::<bool>(),
        any::<String>(),
    );
    let collections = (
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<i64>(), 0..8),
        prop::collection::vec(f64_value(), 0..8),
        prop::collection::vec(any::<String>(), 0..4),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..4),
        any::<Option<u64>>(),
        any::<Option<String>>(),
        prop::collection::hash_map(".{0,6}", any::<i64>(), 0..4),
        prop::collection::btree_map(any::<u32>(), color(), 0..4),
    );
    let messages = (
        prop::collection::hash_map(".{0,6}", point(), 0..3),
        point(),
        prop::option::of(point()),
        prop::collection::vec(point(), 0..3),
        color(),
        prop::collection::vec(color(), 0..6),
        list(),
    );
    (scalars, collections, messages).prop_map(
        |(
            (a, b, c, d, e, f, g, h, i, j, k, s),
            (bytes, shared, numbers, floats, strings, blobs, maybe, maybe_text, map, ordered),
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
            shared: Bytes::from(shared),
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

/// Runs `cases` proptest cases of `check` against one plugin.
fn run_cases<S: Strategy>(
    cases: u32,
    strategy: S,
    check: impl Fn(&tokio::runtime::Runtime, &EchoClient, S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: Clone + std::fmt::Debug,
{
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (client, echo) = rt.block_on(macro_common::launch());
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |value| check(&rt, &echo, value));
    rt.block_on(client.kill());
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn every_field_type_round_trips_in_a_message() {
    run_cases(64, everything(), |rt, echo, value| {
        let back = rt
            .block_on(echo.echo(value.clone()))
            .map_err(|s| TestCaseError::fail(s.to_string()))?;
        prop_assert_eq!(back, value);
        Ok(())
    });
}

#[test]
fn every_argument_type_round_trips() {
    run_cases(64, everything(), |rt, echo, v| {
        let back = rt
            .block_on(echo.pack(
                v.a,
                v.b,
                v.c,
                v.d,
                v.e,
                v.f,
                v.g,
                v.h,
                v.i,
                v.j,
                v.k,
                v.s.clone(),
                v.bytes.clone(),
                v.shared.clone(),
                v.numbers.clone(),
                v.strings.clone(),
                v.maybe,
                v.map.clone(),
                v.ordered.clone(),
                v.point.clone(),
                v.maybe_point.clone(),
                v.color,
                (),
            ))
            .map_err(|s| TestCaseError::fail(s.to_string()))?;
        let expected = Everything {
            floats: Vec::new(),
            blobs: Vec::new(),
            maybe_text: None,
            points_by_name: HashMap::new(),
            points: Vec::new(),
            colors: Vec::new(),
            list: None,
            ..v
        };
        prop_assert_eq!(back, expected);
        Ok(())
    });
}

#[test]
fn every_result_shape_round_trips() {
    let strategy = (
        prop::collection::vec(any::<i64>(), 0..16),
        any::<Option<String>>(),
        prop::collection::hash_map(".{0,6}", point(), 0..4),
        prop::collection::vec(any::<u8>(), 0..128),
        color(),
    );
    run_cases(
        32,
        strategy,
        |rt, echo, (numbers, maybe, map, blob, color)| {
            let fail = |s: intercom::Status| TestCaseError::fail(s.to_string());
            prop_assert_eq!(
                rt.block_on(echo.numbers(numbers.clone())).map_err(fail)?,
                numbers
            );
            prop_assert_eq!(rt.block_on(echo.maybe(maybe.clone())).map_err(fail)?, maybe);
            prop_assert_eq!(rt.block_on(echo.map(map.clone())).map_err(fail)?, map);
            prop_assert_eq!(
                rt.block_on(echo.blob(Bytes::from(blob.clone())))
                    .map_err(fail)?,
                blob
            );
            prop_assert_eq!(rt.block_on(echo.color(color)).map_err(fail)?, color);
            rt.block_on(echo.nothing()).map_err(fail)?;
            Ok(())
        },
    );
}

#[test]
fn defaults_and_presence_survive() {
    // Some(default) is not None, -0.0 keeps its sign, empty collections stay empty.
    run_cases(1, Just(()), |rt, echo, ()| {
        let value = Everything {
            j: -0.0,
            maybe: Some(0),
            maybe_text: Some(String::new()),
            maybe_point: Some(Point {
                x: 0,
                y: 0,
                label: None,
                tags: Vec::new(),
            }),
            ..Everything::default()
        };
        let back = rt
            .block_on(echo.echo(value.clone()))
            .map_err(|s| TestCaseError::fail(s.to_string()))?;
        prop_assert!(back.j.is_sign_negative());
        prop_assert_eq!(back, value);
        let ordered: BTreeMap<u32, Color> = BTreeMap::new();
        prop_assert!(ordered.is_empty());
        Ok(())
    });
}
