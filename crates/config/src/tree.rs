//! A YAML document as a tree that remembers where every key and value was written.
//!
//! Serde stops at the first error and forgets positions once a value is deserialized, but a user
//! fixing a file wants every problem at once, each with its line and column. So the text is first
//! parsed (by serde-saphyr, which gives each node its location) into this small tree; the loader
//! then checks the schema against the tree error by error and looks up positions for the semantic
//! checks that run on the typed config.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// 1-based line and column of a node in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    fn of(location: serde_saphyr::Location) -> Self {
        Self {
            line: location.line(),
            column: location.column(),
        }
    }
}

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A field path such as `spec.workerProfiles[0].name`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// Parses the dotted form used in messages (`spec.network.podCIDR`, `a.b[2].c`).
    pub fn parse(text: &str) -> Self {
        let mut segments = Vec::new();
        for part in text.split('.').filter(|part| !part.is_empty()) {
            let (key, indices) = part.split_once('[').unwrap_or((part, ""));
            if !key.is_empty() {
                segments.push(Segment::Key(key.to_owned()));
            }
            for index in indices.split('[') {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    segments.push(Segment::Index(i));
                }
            }
        }
        Self(segments)
    }

    pub fn child(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    pub fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(Self(rest.to_vec()))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// A YAML syntax error, or a document beyond the parser's limits: where, what and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the parser stopped; the default (line 0) for a problem of the whole file.
    pub pos: Pos,
    pub message: String,
    pub hint: String,
}

/// Parses one YAML document. An empty document is `Value::Null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    // YAML 1.2 booleans only: `on`, `y` or `no` stay strings, as a person reading them expects.
    let options = serde_saphyr::options! { strict_booleans: true };
    let root: Spanned<Value> =
        serde_saphyr::from_str_with_options(text, options).map_err(|err| {
            if let Some(breach) = budget_breach(&err) {
                return SyntaxError {
                    pos: Pos::default(),
                    message: format!("the file is too large for a configuration: {breach}"),
                    hint: "a k0x configuration holds a few hundred values; check that --config \
                           names the right file and that no anchor is repeated into a huge tree"
                        .to_owned(),
                };
            }
            let pos = err
                .location()
                .map(Pos::of)
                .unwrap_or(Pos { line: 1, column: 1 });
            SyntaxError {
                pos,
                message: format!(
                    "invalid YAML: {}",
                    friendly(&first_line(&err.without_snippet().to_string()))
                ),
                hint: "fix the YAML syntax at this position".to_owned(),
            }
        })?;
    Ok(Node::from_spanned(root))
}

/// What limit a document breached (huge, or an alias bomb that expands to a huge tree), in words.
fn budget_breach(err: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::budget::BudgetBreach as B;
    let mut err = err.without_snippet();
    while let serde_saphyr::Error::AliasError { error, .. } = err {
        err = error.without_snippet();
    }
    let serde_saphyr::Error::Budget { breach, .. } = err else {
        return None;
    };
    let limits = serde_saphyr::Budget::default();
    Some(match breach {
        B::Nodes { .. } => format!(
            "it holds or expands to more than {} values",
            limits.max_nodes
        ),
        B::Events { .. } => format!("it holds more than {} YAML events", limits.max_events),
        B::Aliases { .. } | B::AliasAnchorRatio { .. } => {
            format!("it expands more than {} aliases", limits.max_aliases)
        }
        B::Depth { .. } => format!("it nests deeper than {} levels", limits.max_depth),
        _ => "it is beyond the YAML parser's limits".to_owned(),
    })
}

/// serde-saphyr messages may carry a trailing location or snippet; keep the first line only.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    let line = match line.rfind(" at line ") {
        Some(at) => &line[..at],
        None => line,
    };
    line.to_owned()
}

/// Rewrites parser messages that speak to a Rust developer into ones for a person editing YAML.
/// Parentheses are kept for the hint that ends every error line.
fn friendly(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set ").next().unwrap_or(rest);
        return format!("duplicate key `{key}`");
    }
    if message.starts_with("multiple YAML documents") {
        return "the file holds more than one YAML document; keep one, without `---` separators"
            .to_owned();
    }
    message.replace(" (", ", ").replace(')', "")
}

impl Node {
    fn from_spanned(spanned: Spanned<Value>) -> Self {
        Self {
            pos: Pos::of(spanned.referenced),
            value: spanned.value,
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Vec<Entry>> {
        match &mut self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|entry| entry.key == key)
            .map(|entry| &entry.value)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.as_map_mut()?
            .iter_mut()
            .find(|entry| entry.key == key)
            .map(|entry| &mut entry.value)
    }

    /// The node at `path`, or `None` when the file does not say anything there.
    pub fn find(&self, path: &FieldPath) -> Option<&Node> {
        path.0.iter().try_fold(self, |node, segment| match segment {
            Segment::Key(key) => node.get(key),
            Segment::Index(index) => match &node.value {
                Value::Seq(items) => items.get(*index),
                _ => None,
            },
        })
    }

    fn find_mut(&mut self, path: &[Segment]) -> Option<&mut Node> {
        path.iter().try_fold(self, |node, segment| match segment {
            Segment::Key(key) => node.get_mut(key),
            Segment::Index(index) => match &mut node.value {
                Value::Seq(items) => items.get_mut(*index),
                _ => None,
            },
        })
    }

    /// Position of the key that names `path` (for "unknown field"), else of its value.
    pub fn key_pos(&self, path: &FieldPath) -> Option<Pos> {
        match path.0.split_last() {
            Some((Segment::Key(key), parent)) => self
                .find(&FieldPath(parent.to_vec()))?
                .as_map()?
                .iter()
                .find(|entry| &entry.key == key)
                .map(|entry| entry.key_pos),
            _ => self.find(path).map(|node| node.pos),
        }
    }

    /// Position of the value at `path`, or of its closest ancestor the file does contain.
    pub fn nearest_pos(&self, path: &FieldPath) -> Pos {
        let mut path = path.clone();
        loop {
            if let Some(node) = self.find(&path) {
                return node.pos;
            }
            match path.parent() {
                Some(parent) => path = parent,
                None => return self.pos,
            }
        }
    }

    /// Removes the node at `path`; returns whether there was one.
    pub fn remove(&mut self, path: &FieldPath) -> bool {
        let Some((last, parent)) = path.0.split_last() else {
            return false;
        };
        let Some(parent) = self.find_mut(parent) else {
            return false;
        };
        match (&mut parent.value, last) {
            (Value::Map(entries), Segment::Key(key)) => {
                let before = entries.len();
                entries.retain(|entry| &entry.key != key);
                entries.len() != before
            }
            (Value::Seq(items), Segment::Index(index)) if *index < items.len() => {
                items.remove(*index);
                true
            }
            _ => false,
        }
    }

    /// Replaces the value at `path` (which must exist) keeping its position.
    pub fn replace(&mut self, path: &FieldPath, value: Value) -> bool {
        match self.find_mut(&path.0) {
            Some(node) => {
                node.value = value;
                true
            }
            None => false,
        }
    }

    /// Whether the node carries no setting: null, `""`, `{}` or `[]`.
    pub fn is_empty(&self) -> bool {
        match &self.value {
            Value::Null => true,
            Value::Str(s) => s.is_empty(),
            Value::Seq(items) => items.is_empty(),
            Value::Map(entries) => entries.is_empty(),
            _ => false,
        }
    }

    /// The number of nodes in this subtree (bounds the schema-check loop).
    pub fn count(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::count).sum(),
            Value::Map(entries) => entries.iter().map(|entry| entry.value.count()).sum(),
            _ => 0,
        }
    }

    /// The JSON value serde deserializes the typed config from.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::UInt(u) => J::from(*u),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|entry| (entry.key.clone(), entry.value.to_json()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::UInt(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(Node::from_spanned(item));
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<Entry> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let key_text = match key.value {
                Value::Str(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Int(i) => i.to_string(),
                Value::UInt(u) => u.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Null => "null".to_owned(),
                Value::Seq(_) | Value::Map(_) => {
                    return Err(de::Error::custom(
                        "a mapping key must be a plain scalar, not a sequence or mapping",
                    ));
                }
            };
            let value = map.next_value::<Spanned<Value>>()?;
            entries.push(Entry {
                key: key_text,
                key_pos: Pos::of(key.referenced),
                value: Node::from_spanned(value),
            });
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_and_values() {
        let text = "a:\n  b: 1\n  c: [x, y]\nd: \"s\"\n";
        let root = parse(text).unwrap();
        let b = FieldPath::parse("a.b");
        assert_eq!(root.key_pos(&b), Some(Pos { line: 2, column: 3 }));
        assert_eq!(root.find(&b).unwrap().pos, Pos { line: 2, column: 6 });
        let y = root.find(&FieldPath::parse("a.c[1]")).unwrap();
        assert_eq!(y.value, Value::Str("y".into()));
        assert_eq!(
            y.pos,
            Pos {
                line: 3,
                column: 10
            }
        );
        assert_eq!(root.find(&FieldPath::parse("d")).unwrap().pos.line, 4);
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn a_huge_file_or_an_alias_bomb_is_called_too_large() {
        let huge = format!("sans:\n{}", "- a.example.com\n".repeat(300_000));
        let mut bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
        for (name, prev) in ["b", "c", "d", "e", "f", "g"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f"])
        {
            let items = vec![format!("*{prev}"); 10].join(", ");
            bomb += &format!("{name}: &{name} [{items}]\n");
        }
        for text in [huge, bomb] {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.pos, Pos::default(), "{err:?}");
            assert!(
                err.message
                    .starts_with("the file is too large for a configuration: it "),
                "{err:?}"
            );
            assert!(err.hint.contains("--config"), "{err:?}");
            assert!(!err.message.contains('{'), "no debug text: {err:?}");
        }
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(err.message.contains("duplicate key `a`"), "{err:?}");
        assert_eq!(err.pos.line, 3);
    }

    #[test]
    fn path_display_and_parse_round_trip() {
        let path = FieldPath::parse("spec.workerProfiles[2].name");
        assert_eq!(path.to_string(), "spec.workerProfiles[2].name");
        assert_eq!(path.0.len(), 4);
    }

    #[test]
    fn remove_and_nearest_position() {
        let mut root = parse("a:\n  b: 1\n  c: 2\n").unwrap();
        assert!(root.remove(&FieldPath::parse("a.b")));
        assert!(root.find(&FieldPath::parse("a.b")).is_none());
        assert_eq!(root.nearest_pos(&FieldPath::parse("a.b.z")).line, 2);
    }
}
