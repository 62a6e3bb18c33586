//! Text mutations shared by the fuzz-style property tests of every loader (registry, pdp,
//! the `agentsafe.toml` parser): byte and line edits of a known-good file, and fragments
//! that TOML and agentsafe's schemas give meaning to. Other crates include this file with
//! `#[path]`, so it depends on proptest only.

#![allow(
    clippy::indexing_slicing,
    dead_code,
    reason = "test helper: indexes are reduced into range first; each test binary uses a subset"
)]

use proptest::prelude::*;
use proptest::sample::Index;

/// Fragments that TOML and the action schema give meaning to.
pub const TOKENS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    ",",
    ".",
    "#",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "\\",
    "\\u",
    "\\U0010FFFF",
    "\n",
    "\r\n",
    "\t",
    " ",
    "\u{0}",
    "é",
    "\u{feff}",
    "-0",
    "1e999",
    "nan",
    "-inf",
    "9223372036854775808",
    "0x7f",
    "1979-05-27T07:32:00Z",
    "24:00",
    "true",
    "[]",
    "{}",
    "[[params]]",
    "[[prechecks]]",
    "[[state_fields]]",
    "[credentials]",
    "[rollback_params]",
    "name = \"x\"",
    "type = \"string\"",
    "type = \"array\"",
    "items = \"object\"",
    "required = true",
    "min = -1",
    "max = 1e308",
    "min_length = 99999999999",
    "pattern = \"(a*)*$\"",
    "pattern = \"[\"",
    "enum = []",
    "default = {}",
    "target_attr = \"\"",
    "risk = \"critical\"",
    "reversible = true",
    "rollback_action = \"scale-deployment\"",
    "path = \"$.spec[*].x\"",
    "path = \"..\"",
    "ttl = \"0s\"",
    "ttl = \"999999h\"",
    "{{params.",
    "}}",
    "{{",
    "a.b.c = 1",
];

/// One edit of a text.
#[derive(Debug, Clone)]
pub enum Edit {
    DeleteBytes(Index, usize),
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    CopyRange(Index, Index, Index),
    Insert(Index, &'static str),
    SetByte(Index, u8),
}

pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| Edit::DeleteBytes(i, n)),
        any::<Index>().prop_map(Edit::DeleteLine),
        any::<Index>().prop_map(Edit::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(a, b, c)| Edit::CopyRange(a, b, c)),
        (any::<Index>(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Edit::Insert(i, t)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::SetByte(i, b)),
    ]
}

/// Applies `edits` to `text` byte by byte; invalid UTF-8 becomes U+FFFD.
pub fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        let len = bytes.len();
        let at = |i: &Index| i.index(len + 1);
        let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        match e {
            Edit::DeleteBytes(i, n) => {
                let s = at(i);
                bytes.drain(s..(s + n).min(len));
            }
            Edit::DeleteLine(i) => {
                lines.remove(i.index(lines.len()));
                bytes = lines.join(&b'\n');
            }
            Edit::DuplicateLine(i) => {
                let k = i.index(lines.len());
                lines.insert(k, lines[k].clone());
                bytes = lines.join(&b'\n');
            }
            Edit::SwapLines(a, b) => {
                let n = lines.len();
                lines.swap(a.index(n), b.index(n));
                bytes = lines.join(&b'\n');
            }
            Edit::CopyRange(a, b, to) => {
                let (mut s, mut t) = (at(a), at(b));
                if s > t {
                    std::mem::swap(&mut s, &mut t);
                }
                let piece = bytes[s..t.min(s + 200)].to_vec();
                let to = at(to);
                bytes.splice(to..to, piece);
            }
            Edit::Insert(i, token) => {
                let to = at(i);
                bytes.splice(to..to, token.bytes());
            }
            Edit::SetByte(i, b) => {
                if len > 0 {
                    bytes[i.index(len)] = *b;
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// 256 cases, or `PROPTEST_CASES` when set (for a longer hunt).
pub fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
