//! The prost-derive twins of the intercom messages (same field numbers, the protobuf
//! types the intercom encoding uses), and the conversions to them.

use std::collections::{BTreeMap, HashMap};

use intercom_tests::macro_api::__echo_messages::PackRequest as OurPackRequest;
use intercom_tests::macro_api::{
    Color as OurColor, Everything as OurEverything, Node as OurNode, Point as OurPoint,
};
use prost::bytes::Bytes;

use crate::{Extras as OurExtras, Sign as OurSign};

/// [`intercom_tests::macro_api::Color`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Color {
    Red = 0,
    Green = 1,
    Blue = 7,
}

/// [`crate::Sign`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Sign {
    Zero = 0,
    Minus = -3,
    Big = 1000,
}

/// [`intercom_tests::macro_api::Point`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Point {
    #[prost(int32, tag = "1")]
    pub x: i32,
    #[prost(int32, tag = "2")]
    pub y: i32,
    #[prost(string, optional, tag = "3")]
    pub label: Option<String>,
    #[prost(string, repeated, tag = "4")]
    pub tags: Vec<String>,
}

/// [`intercom_tests::macro_api::Node`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Node {
    #[prost(uint32, tag = "1")]
    pub value: u32,
    #[prost(message, optional, boxed, tag = "2")]
    pub next: Option<Box<Node>>,
}

/// [`intercom_tests::macro_api::Everything`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Everything {
    #[prost(int32, tag = "1")]
    pub a: i32,
    #[prost(int32, tag = "2")]
    pub b: i32,
    #[prost(int32, tag = "3")]
    pub c: i32,
    #[prost(int64, tag = "4")]
    pub d: i64,
    #[prost(uint32, tag = "5")]
    pub e: u32,
    #[prost(uint32, tag = "6")]
    pub f: u32,
    #[prost(uint32, tag = "7")]
    pub g: u32,
    #[prost(uint64, tag = "8")]
    pub h: u64,
    #[prost(float, tag = "9")]
    pub i: f32,
    #[prost(double, tag = "10")]
    pub j: f64,
    #[prost(bool, tag = "11")]
    pub k: bool,
    #[prost(string, tag = "12")]
    pub s: String,
    #[prost(bytes = "vec", tag = "13")]
    pub bytes: Vec<u8>,
    #[prost(bytes = "bytes", tag = "14")]
    pub shared: Bytes,
    #[prost(int64, repeated, tag = "15")]
    pub numbers: Vec<i64>,
    #[prost(double, repeated, tag = "16")]
    pub floats: Vec<f64>,
    #[prost(string, repeated, tag = "17")]
    pub strings: Vec<String>,
    #[prost(bytes = "vec", repeated, tag = "18")]
    pub blobs: Vec<Vec<u8>>,
    #[prost(uint64, optional, tag = "19")]
    pub maybe: Option<u64>,
    #[prost(string, optional, tag = "20")]
    pub maybe_text: Option<String>,
    #[prost(hash_map = "string, int64", tag = "21")]
    pub map: HashMap<String, i64>,
    #[prost(btree_map = "uint32, enumeration(Color)", tag = "22")]
    pub ordered: BTreeMap<u32, i32>,
    #[prost(hash_map = "string, message", tag = "23")]
    pub points_by_name: HashMap<String, Point>,
    #[prost(message, optional, tag = "24")]
    pub point: Option<Point>,
    #[prost(message, optional, tag = "25")]
    pub maybe_point: Option<Point>,
    #[prost(message, repeated, tag = "26")]
    pub points: Vec<Point>,
    #[prost(enumeration = "Color", tag = "27")]
    pub color: i32,
    #[prost(enumeration = "Color", repeated, tag = "28")]
    pub colors: Vec<i32>,
    #[prost(message, optional, tag = "29")]
    pub list: Option<Node>,
}

/// [`crate::Extras`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Extras {
    #[prost(int32, repeated, tag = "1")]
    pub small: Vec<i32>,
    #[prost(uint32, repeated, tag = "2")]
    pub shorts: Vec<u32>,
    #[prost(uint32, repeated, tag = "3")]
    pub unsigned: Vec<u32>,
    #[prost(uint64, repeated, tag = "4")]
    pub wide: Vec<u64>,
    #[prost(int32, repeated, tag = "5")]
    pub ints: Vec<i32>,
    #[prost(float, repeated, tag = "6")]
    pub floats: Vec<f32>,
    #[prost(bool, repeated, tag = "7")]
    pub flags: Vec<bool>,
    #[prost(bytes = "bytes", repeated, tag = "8")]
    pub shared: Vec<Bytes>,
    #[prost(int32, optional, tag = "9")]
    pub maybe_small: Option<i32>,
    #[prost(float, optional, tag = "10")]
    pub maybe_float: Option<f32>,
    #[prost(bool, optional, tag = "11")]
    pub maybe_flag: Option<bool>,
    #[prost(bytes = "vec", optional, tag = "12")]
    pub maybe_blob: Option<Vec<u8>>,
    #[prost(enumeration = "Sign", optional, tag = "13")]
    pub maybe_sign: Option<i32>,
    #[prost(enumeration = "Sign", tag = "14")]
    pub sign: i32,
    #[prost(enumeration = "Sign", repeated, tag = "15")]
    pub signs: Vec<i32>,
    #[prost(btree_map = "int64, message", tag = "16")]
    pub by_id: BTreeMap<i64, Point>,
    #[prost(btree_map = "bool, bytes", tag = "17")]
    pub by_flag: BTreeMap<bool, Vec<u8>>,
    #[prost(btree_map = "uint32, string", tag = "18")]
    pub by_byte: BTreeMap<u32, String>,
    #[prost(btree_map = "string, double", tag = "19")]
    pub weights: BTreeMap<String, f64>,
    #[prost(btree_map = "int32, enumeration(Sign)", tag = "20")]
    pub signs_by_small: BTreeMap<i32, i32>,
    #[prost(message, repeated, tag = "21")]
    pub nodes: Vec<Node>,
    #[prost(uint64, tag = "22")]
    pub last: u64,
}

/// [`intercom_tests::macro_api::__echo_messages::PackRequest`]: the arguments of
/// `Echo::pack`, numbered in order (the last one, `()`, has no field).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PackRequest {
    #[prost(int32, tag = "1")]
    pub a: i32,
    #[prost(int32, tag = "2")]
    pub b: i32,
    #[prost(int32, tag = "3")]
    pub c: i32,
    #[prost(int64, tag = "4")]
    pub d: i64,
    #[prost(uint32, tag = "5")]
    pub e: u32,
    #[prost(uint32, tag = "6")]
    pub f: u32,
    #[prost(uint32, tag = "7")]
    pub g: u32,
    #[prost(uint64, tag = "8")]
    pub h: u64,
    #[prost(float, tag = "9")]
    pub i: f32,
    #[prost(double, tag = "10")]
    pub j: f64,
    #[prost(bool, tag = "11")]
    pub k: bool,
    #[prost(string, tag = "12")]
    pub s: String,
    #[prost(bytes = "vec", tag = "13")]
    pub bytes: Vec<u8>,
    #[prost(bytes = "bytes", tag = "14")]
    pub shared: Bytes,
    #[prost(int64, repeated, tag = "15")]
    pub numbers: Vec<i64>,
    #[prost(string, repeated, tag = "16")]
    pub strings: Vec<String>,
    #[prost(uint64, optional, tag = "17")]
    pub maybe: Option<u64>,
    #[prost(hash_map = "string, int64", tag = "18")]
    pub map: HashMap<String, i64>,
    #[prost(btree_map = "uint32, enumeration(Color)", tag = "19")]
    pub ordered: BTreeMap<u32, i32>,
    #[prost(message, optional, tag = "20")]
    pub point: Option<Point>,
    #[prost(message, optional, tag = "21")]
    pub maybe_point: Option<Point>,
    #[prost(enumeration = "Color", tag = "22")]
    pub color: i32,
}

pub fn color_twin(c: OurColor) -> i32 {
    i32::from(match c {
        OurColor::Red => Color::Red,
        OurColor::Green => Color::Green,
        OurColor::Blue => Color::Blue,
    })
}

pub fn sign_twin(s: OurSign) -> i32 {
    i32::from(match s {
        OurSign::Zero => Sign::Zero,
        OurSign::Minus => Sign::Minus,
        OurSign::Big => Sign::Big,
    })
}

pub fn point_twin(p: &OurPoint) -> Point {
    Point {
        x: p.x,
        y: p.y,
        label: p.label.clone(),
        tags: p.tags.clone(),
    }
}

pub fn node_twin(n: &OurNode) -> Node {
    Node {
        value: n.value,
        next: n.next.as_deref().map(|next| Box::new(node_twin(next))),
    }
}

pub fn everything_twin(v: &OurEverything) -> Everything {
    Everything {
        a: v.a.into(),
        b: v.b.into(),
        c: v.c,
        d: v.d,
        e: v.e.into(),
        f: v.f.into(),
        g: v.g,
        h: v.h,
        i: v.i,
        j: v.j,
        k: v.k,
        s: v.s.clone(),
        bytes: v.bytes.clone(),
        shared: v.shared.clone(),
        numbers: v.numbers.clone(),
        floats: v.floats.clone(),
        strings: v.strings.clone(),
        blobs: v.blobs.clone(),
        maybe: v.maybe,
        maybe_text: v.maybe_text.clone(),
        map: v.map.clone(),
        ordered: v
            .ordered
            .iter()
            .map(|(k, c)| (*k, color_twin(*c)))
            .collect(),
        points_by_name: v
            .points_by_name
            .iter()
            .map(|(k, p)| (k.clone(), point_twin(p)))
            .collect(),
        // A message field is always sent by intercom: present in the twin.
        point: Some(point_twin(&v.point)),
        maybe_point: v.maybe_point.as_ref().map(point_twin),
        points: v.points.iter().map(point_twin).collect(),
        color: color_twin(v.color),
        colors: v.colors.iter().copied().map(color_twin).collect(),
        list: v.list.as_ref().map(node_twin),
    }
}

pub fn extras_twin(v: &OurExtras) -> Extras {
    Extras {
        small: v.small.iter().copied().map(i32::from).collect(),
        shorts: v.shorts.iter().copied().map(u32::from).collect(),
        unsigned: v.unsigned.clone(),
        wide: v.wide.clone(),
        ints: v.ints.clone(),
        floats: v.floats.clone(),
        flags: v.flags.clone(),
        shared: v.shared.clone(),
        maybe_small: v.maybe_small.map(i32::from),
        maybe_float: v.maybe_float,
        maybe_flag: v.maybe_flag,
        maybe_blob: v.maybe_blob.clone(),
        maybe_sign: v.maybe_sign.map(sign_twin),
        sign: sign_twin(v.sign),
        signs: v.signs.iter().copied().map(sign_twin).collect(),
        by_id: v.by_id.iter().map(|(k, p)| (*k, point_twin(p))).collect(),
        by_flag: v.by_flag.clone(),
        by_byte: v
            .by_byte
            .iter()
            .map(|(k, s)| (u32::from(*k), s.clone()))
            .collect(),
        weights: v.weights.clone(),
        signs_by_small: v
            .signs_by_small
            .iter()
            .map(|(k, s)| (i32::from(*k), sign_twin(*s)))
            .collect(),
        nodes: v.nodes.iter().map(node_twin).collect(),
        last: v.last,
    }
}

pub fn pack_twin(v: &OurPackRequest) -> PackRequest {
    PackRequest {
        a: v.a.into(),
        b: v.b.into(),
        c: v.c,
        d: v.d,
        e: v.e.into(),
        f: v.f.into(),
        g: v.g,
        h: v.h,
        i: v.i,
        j: v.j,
        k: v.k,
        s: v.s.clone(),
        bytes: v.bytes.clone(),
        shared: v.shared.clone(),
        numbers: v.numbers.clone(),
        strings: v.strings.clone(),
        maybe: v.maybe,
        map: v.map.clone(),
        ordered: v
            .ordered
            .iter()
            .map(|(k, c)| (*k, color_twin(*c)))
            .collect(),
        point: Some(point_twin(&v.point)),
        maybe_point: v.maybe_point.as_ref().map(point_twin),
        color: color_twin(v.color),
    }
}
