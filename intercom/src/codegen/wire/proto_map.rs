//! [`ProtoMap`]: the map types a `map<K, V>` field can hold (`HashMap`, `BTreeMap`).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};

use prost::DecodeError;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};

use super::{ProtoValue, map};
use crate::codegen::proto_text::MessageBuilder;

/// A map type usable as a `map<K, V>` field.
pub trait ProtoMap: Default + Send + Sync + 'static {
    /// The key type (an integer, `bool` or `String`).
    type Key: ProtoValue;
    /// The value type.
    type Value: ProtoValue;
    /// The entries, in the map's iteration order.
    fn entries(&self) -> impl Iterator<Item = (&Self::Key, &Self::Value)>;
    /// Inserts one entry (a later duplicate key wins, as in protobuf).
    fn insert_entry(&mut self, key: Self::Key, value: Self::Value);

    /// [`map::encode`] (a provided method for the reason given on [`ProtoValue`]).
    fn encode_map(tag: u32, map: &Self, buf: &mut impl BufMut) {
        map::encode(tag, map, buf);
    }
    /// [`map::merge`].
    ///
    /// # Errors
    /// As [`map::merge`].
    fn merge_map(
        wire_type: WireType,
        map: &mut Self,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        map::merge(wire_type, map, buf, ctx)
    }
    /// [`map::encoded_len`].
    fn map_len(tag: u32, map: &Self) -> usize {
        map::encoded_len(tag, map)
    }
    /// Describes the field in the `.proto` text.
    fn describe_map(message: &mut MessageBuilder<'_>, name: &str, number: u32, doc: &[&str]) {
        message.map::<Self>(name, number, doc);
    }
}

impl<K, V, S> ProtoMap for HashMap<K, V, S>
where
    K: ProtoValue + Eq + Hash,
    V: ProtoValue,
    S: BuildHasher + Default + Send + Sync + 'static,
{
    type Key = K;
    type Value = V;
    fn entries(&self) -> impl Iterator<Item = (&K, &V)> {
        self.iter()
    }
    fn insert_entry(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
}

impl<K: ProtoValue + Ord, V: ProtoValue> ProtoMap for BTreeMap<K, V> {
    type Key = K;
    type Value = V;
    fn entries(&self) -> impl Iterator<Item = (&K, &V)> {
        self.iter()
    }
    fn insert_entry(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
}
