//! YAML plumbing shared by both documents: positions, field paths, and
//! parsing that keeps going after the first error.
//!
//! serde_yaml parses the document into a `Value` tree and serde turns it into
//! typed structs, but neither keeps positions past the first error. So each
//! document is also read once as a stream of marked events (yaml-rust2) to
//! build a [`Positions`] index from field path (`pools.web.endpoints[2].weight`)
//! to line and column. Typed parsing then goes through [`Lenient`], which
//! turns a failure inside one list item or map entry into a recorded error
//! instead of aborting the whole document, so a file with five mistakes
//! reports five.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_yaml::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::{Diagnostic, Diagnostics};

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        Pos {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

/// Where each field of a document starts: its key (for map entries) and its
/// value.
#[derive(Debug, Default)]
pub struct Positions {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl Positions {
    /// Position of the value at `path`, or of its nearest ancestor.
    pub fn value(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match parent_path(p) {
                Some(parent) => p = parent,
                None => return Pos { line: 1, column: 1 },
            }
        }
    }

    /// Whether the document has a value at `path`.
    pub fn has(&self, path: &str) -> bool {
        self.values.contains_key(path)
    }

    /// Position of the key of the map entry at `path`, else as [`Self::value`].
    pub fn key(&self, path: &str) -> Pos {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }
}

/// The path one level up: `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``.
fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = if path.ends_with(']') {
        path.rfind('[')
    } else if let Some(inner) = path.strip_suffix('"') {
        // a quoted key: find the opening quote, then the dot before it
        inner.rfind('"').map(|q| q.saturating_sub(1))
    } else {
        path.rfind('.')
    };
    // a key may hold any text (escaped quotes, multi-byte characters):
    // never cut inside a character
    let mut cut = cut.unwrap_or(0).min(path.len().saturating_sub(1));
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(&path[..cut])
}

/// Renders a map key as a path segment: bare when it is a plain word,
/// quoted when it holds dots or other punctuation (zone names do).
pub fn key_segment(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let mut out = String::with_capacity(parent.len() + key.len() + 3);
    out.push_str(parent);
    if !parent.is_empty() {
        out.push('.');
    }
    if plain {
        out.push_str(key);
    } else {
        let _ = write!(out, "{key:?}");
    }
    out
}

/// Renders a list index as a path segment.
pub fn index_segment(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

enum Frame {
    Map {
        path: String,
        /// the key just read, waiting for its value
        pending_key: Option<String>,
        seen: HashMap<String, Pos>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

/// Builds [`Positions`] from yaml-rust2's marked events, and notes duplicate
/// keys with the position of the second occurrence.
struct Indexer {
    /// Whether to record positions and paths; without, only the checks
    /// (nesting, aliases, duplicate keys) run, and cheaply.
    record: bool,
    stack: Vec<Frame>,
    positions: Positions,
    duplicates: Vec<(String, Pos, Pos)>,
    /// Depth of a complex (non-scalar) map key being skipped.
    skip_depth: usize,
}

impl Indexer {
    /// Path for the node that starts now (empty when not recording), and
    /// advances the parent.
    fn next_path(&mut self) -> Option<String> {
        let record = self.record;
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = if record {
                    index_segment(path, *next)
                } else {
                    String::new()
                };
                *next += 1;
                Some(p)
            }
            Some(Frame::Map {
                path, pending_key, ..
            }) => pending_key.take().map(|k| {
                if record {
                    key_segment(path, &k)
                } else {
                    String::new()
                }
            }),
        }
    }

    /// In a map with no pending key, a scalar is a key.
    fn in_key_position(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Map {
                pending_key: None,
                ..
            })
        )
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from(mark);
        if self.skip_depth > 0 {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.skip_depth += 1,
                Event::MappingEnd | Event::SequenceEnd => self.skip_depth -= 1,
                _ => {}
            }
            if self.skip_depth == 0 {
                if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
                    *pending_key = Some("?".into());
                }
            }
            return;
        }
        match ev {
            Event::Scalar(text, ..) if self.in_key_position() => {
                if let Some(Frame::Map {
                    path,
                    pending_key,
                    seen,
                }) = self.stack.last_mut()
                {
                    if let Some(first) = seen.insert(text.clone(), pos) {
                        self.duplicates.push((key_segment(path, &text), first, pos));
                    }
                    if self.record {
                        self.positions.keys.insert(key_segment(path, &text), pos);
                    }
                    *pending_key = Some(text);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) if self.in_key_position() => {
                self.skip_depth = 1;
            }
            Event::Scalar(..) | Event::Alias(..) => {
                if let Some(p) = self.next_path() {
                    if self.record {
                        self.positions.values.entry(p).or_insert(pos);
                    }
                }
            }
            Event::MappingStart(..) => {
                let path = self.next_path().unwrap_or_default();
                if self.record {
                    self.positions.values.entry(path.clone()).or_insert(pos);
                }
                self.stack.push(Frame::Map {
                    path,
                    pending_key: None,
                    seen: HashMap::new(),
                });
            }
            Event::SequenceStart(..) => {
                let path = self.next_path().unwrap_or_default();
                if self.record {
                    self.positions.values.entry(path.clone()).or_insert(pos);
                }
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// The deepest nesting of mappings and sequences a document may have: a
/// spec needs about ten levels, and every level costs the parsers stack.
pub const MAX_DEPTH: usize = 64;

/// How many nodes a document may stand for once its aliases are
/// expanded, beyond its own: four times its own, plus a little. Anchors
/// reused a few times pass; an alias bomb (a short text standing for
/// millions of nodes) does not.
fn expansion_limit(own: usize) -> usize {
    own.saturating_mul(4).saturating_add(10_000)
}

/// Feeds the first document's events to `indexer`, one at a time (the
/// parser's own `load` recurses once per level, so a short document of
/// deep nesting would overflow the stack), refusing nesting deeper than
/// [`MAX_DEPTH`] and aliases that would expand the document past
/// [`expansion_limit`].
fn index_events<T: Iterator<Item = char>>(
    parser: &mut Parser<T>,
    indexer: &mut Indexer,
) -> Result<(), (Marker, String)> {
    let mut depth = 0usize;
    // events read, and events they stand for with aliases expanded
    let (mut own, mut expanded) = (0usize, 0usize);
    // per anchor id, the expanded size of its node; open anchors with the
    // depth they close at and the expanded count they started at
    let mut sizes: HashMap<usize, usize> = HashMap::new();
    let mut open: Vec<(usize, usize, usize)> = Vec::new();
    loop {
        let (ev, mark) = parser
            .next_token()
            .map_err(|e| (*e.marker(), e.info().to_string()))?;
        own += 1;
        expanded += 1;
        match &ev {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err((mark, format!("nested deeper than {MAX_DEPTH} levels")));
                }
                if *anchor > 0 {
                    open.push((*anchor, depth, expanded - 1));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(&(anchor, at, from)) = open.last() {
                    if at == depth {
                        sizes.insert(anchor, expanded - from);
                        open.pop();
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Event::Scalar(_, _, anchor, _) if *anchor > 0 => {
                sizes.insert(*anchor, 1);
            }
            Event::Alias(anchor) => {
                expanded = expanded.saturating_add(sizes.get(anchor).copied().unwrap_or(1));
            }
            _ => {}
        }
        if expanded > expansion_limit(own) {
            return Err((
                mark,
                "aliases expand the document to more than four times its size".into(),
            ));
        }
        let last = matches!(ev, Event::DocumentEnd | Event::StreamEnd);
        indexer.on_event(ev, mark);
        if last {
            return Ok(());
        }
    }
}

/// A parsed YAML document: its value tree and where each field is.
pub struct Document {
    pub file: String,
    pub value: Value,
    /// The text, kept to index positions the first time a diagnostic
    /// needs one: a valid document never pays for the index.
    source: Option<String>,
    positions: std::sync::OnceLock<Positions>,
}

/// Reads `text`'s events through an [`Indexer`], recording positions or
/// only checking.
fn index(text: &str, record: bool) -> Result<Indexer, (Marker, String)> {
    let mut indexer = Indexer {
        record,
        stack: Vec::new(),
        positions: Positions::default(),
        duplicates: Vec::new(),
        skip_depth: 0,
    };
    let mut parser = Parser::new_from_str(text);
    index_events(&mut parser, &mut indexer)?;
    Ok(indexer)
}

impl Document {
    /// Parses `text` (named `file` in messages). Syntax errors and duplicate
    /// keys are reported here; nothing is typed yet.
    pub fn parse(file: &str, text: &str) -> Result<Document, Diagnostics> {
        let syntax = |(m, info): (Marker, String)| {
            Diagnostics(vec![Diagnostic {
                file: file.to_string(),
                line: m.line(),
                column: m.col() + 1,
                path: String::new(),
                message: format!("invalid YAML: {info}"),
            }])
        };
        let mut checked = index(text, false).map_err(syntax)?;
        if !checked.duplicates.is_empty() {
            // again, with the paths the report names
            checked = index(text, true).map_err(syntax)?;
            return Err(Diagnostics(
                checked
                    .duplicates
                    .into_iter()
                    .map(|(path, first, second)| Diagnostic {
                        file: file.to_string(),
                        line: second.line,
                        column: second.column,
                        path,
                        message: format!(
                            "duplicate key (first defined at line {}, column {})",
                            first.line, first.column
                        ),
                    })
                    .collect(),
            ));
        }
        let value = match serde_yaml::from_str::<Value>(text) {
            Ok(Value::Null) => Value::Mapping(Default::default()),
            Ok(v) => v,
            Err(e) => {
                let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                return Err(Diagnostics(vec![Diagnostic {
                    file: file.to_string(),
                    line,
                    column,
                    path: String::new(),
                    message: format!("invalid YAML: {e}"),
                }]));
            }
        };
        Ok(Document {
            file: file.to_string(),
            value,
            source: Some(text.to_string()),
            positions: std::sync::OnceLock::new(),
        })
    }

    /// Checks `text` as [`Document::parse`] does (syntax, nesting,
    /// aliases, duplicate keys) without building its value tree: a
    /// document for diagnostics whose value is empty, or `None` when the
    /// text is empty (the value-tree path reads that as an empty map).
    pub fn checked(file: &str, text: &str) -> Result<Option<Document>, Diagnostics> {
        match index(text, false) {
            Ok(i) if i.duplicates.is_empty() && !text.trim().is_empty() => Ok(Some(Document {
                file: file.to_string(),
                value: Value::Null,
                source: Some(text.to_string()),
                positions: std::sync::OnceLock::new(),
            })),
            // the full parse reports what is wrong
            Ok(_) | Err(_) => Document::parse(file, text).map(|_| None),
        }
    }

    /// Where each field is, indexed on first use.
    pub fn positions(&self) -> &Positions {
        self.positions.get_or_init(|| {
            self.source
                .as_deref()
                .and_then(|t| index(t, true).ok())
                .map(|i| i.positions)
                .unwrap_or_default()
        })
    }

    /// A document made from a value rather than text: no positions.
    pub fn from_value(file: &str, value: Value) -> Document {
        let value = match value {
            Value::Null => Value::Mapping(Default::default()),
            v => v,
        };
        Document {
            file: file.to_string(),
            value,
            source: None,
            positions: std::sync::OnceLock::new(),
        }
    }

    /// A diagnostic at the value of `path`.
    pub fn error(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let pos = self.positions().value(path);
        Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// A diagnostic at the key of `path` (for unknown or duplicate keys).
    pub fn key_error(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let pos = self.positions().key(path);
        Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// Turns a typed-parse failure at `base` + `rel` into a diagnostic.
    pub fn parse_error(&self, base: &str, failure: &ParseFailure) -> Diagnostic {
        let mut path = base.to_string();
        for seg in &failure.segments {
            path = match seg {
                Seg::Key(k) => key_segment(&path, k),
                Seg::Index(i) => index_segment(&path, *i),
            };
        }
        // an unknown field is best shown at its key; serde_path_to_error
        // puts the key in the path already, but not on every path
        if let Some(field) = unknown_field(&failure.message) {
            if failure.segments.last() != Some(&Seg::Key(field.to_string())) {
                path = key_segment(&path, field);
            }
            return self.key_error(&path, failure.message.clone());
        }
        self.error(&path, failure.message.clone())
    }
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Why one item did not parse: where inside it, and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseFailure {
    pub segments: Vec<Seg>,
    pub message: String,
}

/// Deserializes `value` as `T`, reporting the field path inside `value` on
/// failure and phrasing the message as "expected X, got Y".
pub fn parse_value<T: DeserializeOwned>(value: Value) -> Result<T, ParseFailure> {
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    T::deserialize(de).map_err(|e| {
        let segments = track
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        ParseFailure {
            segments,
            message: rephrase(&e.to_string()),
        }
    })
}

/// serde says "invalid type: string \"heavy\", expected u16"; operators read
/// "expected an integer 0..=65535, got string \"heavy\"" more easily.
fn rephrase(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((got, expected)) = rest.split_once(", expected ") {
                return format!("expected {expected}, got {got}");
            }
        }
    }
    message.to_string()
}

/// A field that parses on its own: a failure inside it is kept as a
/// [`ParseFailure`] and the rest of the document goes on parsing.
#[derive(Debug, Clone)]
pub enum Lenient<T> {
    Ok(T),
    Failed(ParseFailure),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Ok(match parse_value(value) {
            Ok(t) => Lenient::Ok(t),
            Err(f) => Lenient::Failed(f),
        })
    }
}

/// Splits a YAML "tagged" value the way our step lists are written: a bare
/// word (`health`) or a map with exactly one key (`first: 2`).
pub fn tagged(value: Value) -> Result<(String, Option<Value>), String> {
    match value {
        Value::String(s) => Ok((s, None)),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.into_iter().next().expect("one entry");
            match k {
                Value::String(s) => Ok((s, Some(v))),
                other => Err(format!("expected a name, got {}", describe(&other))),
            }
        }
        Value::Mapping(m) => Err(format!(
            "expected a name or a map with one key, got a map with {} keys",
            m.len()
        )),
        other => Err(format!(
            "expected a name or a map with one key, got {}",
            describe(&other)
        )),
    }
}

/// A short description of a YAML value for messages.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a map".into(),
        Value::Tagged(t) => format!("tagged value !{}", t.tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_paths() {
        let text = "pools:\n  web:\n    endpoints:\n      - id: a\n        weight: 3\n      - id: b\n        weight: heavy\nzones:\n  glb.example.com:\n    ttl: 5\n";
        let doc = Document::parse("z.yaml", text).unwrap();
        let p = |s: &str| {
            let p = doc.positions().value(s);
            (p.line, p.column)
        };
        assert_eq!(p("pools.web.endpoints[1].weight"), (7, 17));
        assert_eq!(p("pools.web.endpoints[0].id"), (4, 13));
        assert_eq!(p("zones.\"glb.example.com\".ttl"), (10, 10));
        // a path that does not exist falls back to its nearest ancestor
        assert_eq!(p("pools.web.endpoints[1].nope").0, 6);
        let k = doc.positions().key("zones.\"glb.example.com\".ttl");
        assert_eq!((k.line, k.column), (10, 5));
    }

    #[test]
    fn duplicate_keys_point_at_the_second() {
        let err = Document::parse("z.yaml", "a: 1\nb:\n  c: 1\n  c: 2\n")
            .err()
            .unwrap();
        assert_eq!(err.0.len(), 1);
        let d = &err.0[0];
        assert_eq!((d.line, d.column, d.path.as_str()), (4, 3, "b.c"));
        assert!(d.message.contains("first defined at line 3"), "{d}");
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = Document::parse("z.yaml", "a: [1, 2\nb: 3\n").err().unwrap();
        assert_eq!(err.0.len(), 1);
        assert!(err.0[0].message.starts_with("invalid YAML"));
        assert!(err.0[0].line >= 1);
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent_path("a.b[2]"), Some("a.b"));
        assert_eq!(parent_path("a.b"), Some("a"));
        assert_eq!(parent_path("zones.\"x.y\""), Some("zones"));
        assert_eq!(parent_path("a"), Some(""));
        assert_eq!(parent_path(""), None);
    }

    #[test]
    fn rephrased_type_errors() {
        assert_eq!(
            rephrase("invalid type: string \"heavy\", expected u16"),
            "expected u16, got string \"heavy\""
        );
        assert_eq!(rephrase("missing field `id`"), "missing field `id`");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // two thousand bytes of block sequences, two thousand levels deep
        let text = format!("zones:\n  {}x\n", "- ".repeat(1000));
        let err = Document::parse("deep.yaml", &text).err().expect("refused");
        assert!(err.0[0].message.contains("nested deeper than 64"), "{err}");
        let flow = format!("a: {}{}", "[".repeat(100), "]".repeat(100));
        assert!(Document::parse("flow.yaml", &flow).is_err());
        let ok = format!("a: {}1{}", "[".repeat(60), "]".repeat(60));
        assert!(Document::parse("ok.yaml", &ok).is_ok());
    }

    #[test]
    fn alias_bombs_are_refused_and_reuse_passes() {
        let items = vec!["1"; 10_000].join(",");
        let aliases = vec!["*a"; 200].join(",");
        let bomb = format!("x: &a [{items}]\ny: [{aliases}]\n");
        let err = Document::parse("bomb.yaml", &bomb).err().expect("refused");
        assert!(err.0[0].message.contains("aliases expand"), "{err}");
        let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
        assert!(Document::parse("laughs.yaml", laughs).is_err());
        let reuse =
            "check: &c {kind: tcp, port: 443}\np1: {check: *c}\np2: {check: *c}\np3: {check: *c}\n";
        assert!(Document::parse("reuse.yaml", reuse).is_ok());
    }

    #[test]
    fn odd_keys_never_cut_a_character() {
        // a quoted key holding an escaped quote after a two-byte character
        let region = key_segment("regions", "\u{86}\u{2d058}a lc\u{96}Ù");
        let path = key_segment(&region, "\"");
        let positions = Positions::default();
        assert_eq!(positions.value(&path).line, 1);
        assert_eq!(positions.key(&format!("{path}.lat")).line, 1);
        let mut p = path.as_str();
        while let Some(parent) = parent_path(p) {
            assert!(parent.len() < p.len());
            p = parent;
        }
    }
}
