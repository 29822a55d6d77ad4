//! Helpers shared by the fuzz targets: an independent duplicate-key check for JSON.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// A JSON value that keeps every object member, duplicates included, in order.
enum Tree {
    Leaf,
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }
    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Tree::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Tree>()? {
            out.push((k, v));
        }
        Ok(Tree::Map(out))
    }
}

fn dup(tree: &Tree) -> bool {
    match tree {
        Tree::Leaf => false,
        Tree::Seq(items) => items.iter().any(dup),
        Tree::Map(members) => {
            let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
            keys.sort_unstable();
            keys.windows(2).any(|w| w[0] == w[1]) || members.iter().any(|(_, v)| dup(v))
        }
    }
}

/// Whether `json` has an object with a repeated key at any depth, decided by
/// collecting every member first and comparing sorted keys afterwards (a
/// different method from the library's check-on-insert). `None` if `json`
/// is not valid JSON.
pub fn has_duplicate_keys(json: &[u8]) -> Option<bool> {
    serde_json::from_slice::<Tree>(json).ok().map(|t| dup(&t))
}
