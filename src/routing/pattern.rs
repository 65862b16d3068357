//! Event type names and the patterns subscriptions, `ListEvents` and `WatchEvents` select them by.
//!
//! A name is dot-separated segments of ASCII letters, digits, `_` and `-` (`invoice.paid`,
//! `pull_request`, `loft.ping`). Names are case-sensitive: providers send them verbatim and
//! `Push` is not `push`.
//!
//! A pattern is one of:
//!
//! | written        | matches                                                    |
//! |----------------|------------------------------------------------------------|
//! | `*`            | every name                                                 |
//! | `task.*`       | names strictly under `task.` (`task.x`, `task.x.y`), not `task` |
//! | `task`, `task.created` | the name itself and every name under it (`task.created.v2`) |
//!
//! The last row is both the spec's "exact" and its "category": a pattern without `*` matches
//! the name and its descendants. The two readings only differ for a name that also has
//! children, and a subscriber to `task.created` wants `task.created.v2` as well; anyone who
//! wants the children alone writes `task.created.*`.

use std::fmt;
use std::str::FromStr;

/// The longest event type name, in bytes (all of them ASCII).
pub const MAX_NAME_LEN: usize = 128;

/// How many patterns one set (one subscription, one feed filter) may hold.
pub const MAX_PATTERNS: usize = 100;

/// A syntactically valid event type name. Serializes as its string; deserializing parses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventTypeName(String);

/// Why a string is not an event type name or pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("event type must not be empty")]
    Empty,
    #[error("event type is {len} characters long; the limit is {MAX_NAME_LEN}")]
    TooLong { len: usize },
    #[error(
        "event type has an empty segment at character {position}: segments are separated by single dots and neither start nor end the name"
    )]
    EmptySegment { position: usize },
    #[error(
        "event type has {found:?} at character {position}: only ASCII letters, digits, '_', '-' and '.' are allowed"
    )]
    InvalidCharacter { found: char, position: usize },
    #[error(
        "'*' may only stand alone (all types) or as the whole last segment (as in 'task.*'), found at character {position}"
    )]
    MisplacedWildcard { position: usize },
}

impl EventTypeName {
    pub fn parse(s: &str) -> Result<EventTypeName, PatternError> {
        check_name(s, false)?;
        Ok(EventTypeName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Checks the name syntax. `in_pattern` only changes the message for a `*`, which is a
/// misplaced wildcard in a pattern and a plain bad character in a name.
fn check_name(s: &str, in_pattern: bool) -> Result<(), PatternError> {
    if s.is_empty() {
        return Err(PatternError::Empty);
    }
    // Count characters, not bytes, so the message matches what the user typed.
    let len = s.chars().count();
    if len > MAX_NAME_LEN {
        return Err(PatternError::TooLong { len });
    }
    let mut segment_len = 0;
    for (index, c) in s.chars().enumerate() {
        let position = index + 1;
        match c {
            '.' => {
                if segment_len == 0 {
                    return Err(PatternError::EmptySegment { position });
                }
                segment_len = 0;
            }
            '*' if in_pattern => return Err(PatternError::MisplacedWildcard { position }),
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => segment_len += 1,
            found => return Err(PatternError::InvalidCharacter { found, position }),
        }
    }
    if segment_len == 0 {
        return Err(PatternError::EmptySegment { position: len });
    }
    Ok(())
}

impl fmt::Display for EventTypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EventTypeName {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventTypeName::parse(s)
    }
}

impl AsRef<str> for EventTypeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventTypeName {
    type Error = PatternError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        check_name(&s, false)?;
        Ok(EventTypeName(s))
    }
}

impl From<EventTypeName> for String {
    fn from(name: EventTypeName) -> String {
        name.0
    }
}

/// One event type pattern; see the module docs for what each form matches. Serializes as
/// written; deserializing parses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventTypePattern(Kind);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Kind {
    All,
    /// `task.*`: holds `task`.
    Under(EventTypeName),
    /// `task` / `task.created`.
    SelfAndUnder(EventTypeName),
}

impl EventTypePattern {
    pub const ALL: EventTypePattern = EventTypePattern(Kind::All);

    pub fn parse(s: &str) -> Result<EventTypePattern, PatternError> {
        if s == "*" {
            return Ok(EventTypePattern(Kind::All));
        }
        let kind = match s.strip_suffix(".*") {
            Some(parent) => {
                // Positions within the parent are positions within the pattern, as both start
                // at the first character. Only an empty last segment needs moving: the dot
                // that closes it is the one before `*`, not part of the parent.
                let parent_len = parent.chars().count();
                check_name(parent, true).map_err(|e| match e {
                    PatternError::Empty => PatternError::EmptySegment { position: 1 },
                    PatternError::EmptySegment { position } if position == parent_len => {
                        PatternError::EmptySegment { position: parent_len + 1 }
                    }
                    other => other,
                })?;
                Kind::Under(EventTypeName(parent.to_owned()))
            }
            None => {
                check_name(s, true)?;
                Kind::SelfAndUnder(EventTypeName(s.to_owned()))
            }
        };
        Ok(EventTypePattern(kind))
    }

    /// Whether `name` is selected. Takes any string, since names read from a request (a
    /// header, a JSON pointer) are matched before, or without, being parsed.
    pub fn matches(&self, name: &str) -> bool {
        match &self.0 {
            Kind::All => true,
            Kind::Under(parent) => is_under(name, parent.as_str()),
            Kind::SelfAndUnder(base) => name == base.as_str() || is_under(name, base.as_str()),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self.0, Kind::All)
    }
}

/// `name` is `parent.` followed by at least one more character.
fn is_under(name: &str, parent: &str) -> bool {
    name.len() > parent.len() + 1 && name.starts_with(parent) && name.as_bytes()[parent.len()] == b'.'
}

impl fmt::Display for EventTypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::All => f.write_str("*"),
            Kind::Under(parent) => write!(f, "{parent}.*"),
            Kind::SelfAndUnder(base) => write!(f, "{base}"),
        }
    }
}

impl FromStr for EventTypePattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventTypePattern::parse(s)
    }
}

impl TryFrom<String> for EventTypePattern {
    type Error = PatternError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        EventTypePattern::parse(&s)
    }
}

impl From<EventTypePattern> for String {
    fn from(pattern: EventTypePattern) -> String {
        pattern.to_string()
    }
}

/// The event type patterns of one subscription or feed filter. Empty selects every type, as
/// the API documents for an empty `event_types`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatternSet(Vec<EventTypePattern>);

/// Why a list of patterns was refused; `index` is the position in the list as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternSetError {
    #[error("event_types[{index}] ({pattern:?}): {source}")]
    Pattern { index: usize, pattern: String, source: PatternError },
    #[error("{count} event type patterns given; the limit is {MAX_PATTERNS}")]
    TooMany { count: usize },
}

impl PatternSet {
    pub fn parse<I, S>(patterns: I) -> Result<PatternSet, PatternSetError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Vec::new();
        let mut patterns = patterns.into_iter().enumerate();
        while let Some((index, pattern)) = patterns.next() {
            let pattern = pattern.as_ref();
            if index == MAX_PATTERNS {
                return Err(PatternSetError::TooMany { count: index + 1 + patterns.count() });
            }
            let p = EventTypePattern::parse(pattern).map_err(|source| PatternSetError::Pattern {
                index,
                pattern: pattern.to_owned(),
                source,
            })?;
            parsed.push(p);
        }
        Ok(PatternSet(parsed))
    }

    /// The set that selects everything.
    pub fn all() -> PatternSet {
        PatternSet(Vec::new())
    }

    pub fn matches(&self, name: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p.matches(name))
    }

    pub fn is_all(&self) -> bool {
        self.0.is_empty() || self.0.iter().any(EventTypePattern::is_all)
    }

    /// The patterns as given, for storing and echoing back.
    pub fn patterns(&self) -> &[EventTypePattern] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pat(s: &str) -> EventTypePattern {
        EventTypePattern::parse(s).unwrap()
    }

    #[test]
    fn valid_names() {
        for name in [
            "a",
            "push",
            "invoice.paid",
            "pull_request",
            "check-run.completed",
            "loft.ping",
            "A.B.C.1.2.3",
            &"x".repeat(128),
        ] {
            assert_eq!(EventTypeName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn invalid_names_say_why() {
        let cases: &[(&str, PatternError)] = &[
            ("", PatternError::Empty),
            (".a", PatternError::EmptySegment { position: 1 }),
            ("a.", PatternError::EmptySegment { position: 2 }),
            ("a..b", PatternError::EmptySegment { position: 3 }),
            ("a b", PatternError::InvalidCharacter { found: ' ', position: 2 }),
            ("orders/create", PatternError::InvalidCharacter { found: '/', position: 7 }),
            ("caf\u{e9}", PatternError::InvalidCharacter { found: '\u{e9}', position: 4 }),
            ("task.*", PatternError::InvalidCharacter { found: '*', position: 6 }),
        ];
        for (input, want) in cases {
            assert_eq!(EventTypeName::parse(input).unwrap_err(), *want, "{input:?}");
        }
        assert_eq!(EventTypeName::parse(&"x".repeat(129)).unwrap_err(), PatternError::TooLong { len: 129 });
        assert_eq!(
            PatternError::EmptySegment { position: 3 }.to_string(),
            "event type has an empty segment at character 3: segments are separated by single dots and neither start nor end the name"
        );
    }

    #[test]
    fn exact_pattern_matches_itself_and_descendants() {
        let p = pat("task.created");
        assert!(p.matches("task.created"));
        assert!(p.matches("task.created.v2"));
        assert!(!p.matches("task"));
        assert!(!p.matches("task.created2"));
        assert!(!p.matches("task.createdx.y"));
        assert!(!p.matches("task.updated"));
    }

    #[test]
    fn category_matches_itself_and_everything_under_it() {
        let p = pat("task");
        assert!(p.matches("task"));
        assert!(p.matches("task.created"));
        assert!(p.matches("task.created.v2"));
        assert!(!p.matches("tasks"));
        assert!(!p.matches("tas"));
        assert!(!p.matches("other.task"));
        assert!(!p.matches("task."));
    }

    #[test]
    fn prefix_matches_strictly_under() {
        let p = pat("task.*");
        assert!(p.matches("task.x"));
        assert!(p.matches("task.x.y"));
        assert!(!p.matches("task"));
        assert!(!p.matches("task."));
        assert!(!p.matches("tasks.x"));
        assert!(!p.matches("x.task.y"));
    }

    #[test]
    fn star_matches_everything() {
        let p = pat("*");
        assert!(p.is_all());
        assert!(p.matches("anything"));
        assert!(p.matches(""));
    }

    #[test]
    fn misplaced_wildcards_are_refused() {
        for (input, position) in
            [("task.*.done", 6), ("ta*", 3), ("*.created", 1), ("**", 1), ("task.**", 6), ("task*", 5)]
        {
            assert_eq!(
                EventTypePattern::parse(input).unwrap_err(),
                PatternError::MisplacedWildcard { position },
                "{input:?}"
            );
        }
        assert_eq!(EventTypePattern::parse(".*").unwrap_err(), PatternError::EmptySegment { position: 1 });
        assert_eq!(EventTypePattern::parse("a..*").unwrap_err(), PatternError::EmptySegment { position: 3 });
    }

    #[test]
    fn patterns_display_as_written() {
        for s in ["*", "task.*", "task", "task.created", "a.b.*"] {
            assert_eq!(pat(s).to_string(), s);
        }
    }

    #[test]
    fn serde_uses_the_string_form_and_parses() {
        let name: EventTypeName = serde_json::from_str("\"invoice.paid\"").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"invoice.paid\"");
        assert!(serde_json::from_str::<EventTypeName>("\"bad name\"").is_err());
        let pattern: EventTypePattern = serde_json::from_str("\"task.*\"").unwrap();
        assert_eq!(serde_json::to_string(&pattern).unwrap(), "\"task.*\"");
        assert!(serde_json::from_str::<EventTypePattern>("\"a.*.b\"").is_err());
    }

    #[test]
    fn empty_set_matches_all() {
        let set = PatternSet::parse(Vec::<String>::new()).unwrap();
        assert!(set.is_all());
        assert!(set.matches("whatever.it.is"));
    }

    #[test]
    fn set_matches_any_member() {
        let set = PatternSet::parse(["invoice.paid", "customer.*"]).unwrap();
        assert!(set.matches("invoice.paid"));
        assert!(set.matches("customer.created"));
        assert!(!set.matches("customer"));
        assert!(!set.matches("invoice.voided"));
        assert!(!set.is_all());
    }

    #[test]
    fn set_errors_name_the_index() {
        let err = PatternSet::parse(["ok", "bad pattern"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event_types[1] (\"bad pattern\"): event type has ' ' at character 4: only ASCII letters, digits, '_', '-' and '.' are allowed"
        );
        let many: Vec<String> = (0..MAX_PATTERNS + 5).map(|i| format!("t{i}")).collect();
        assert_eq!(PatternSet::parse(&many).unwrap_err(), PatternSetError::TooMany { count: MAX_PATTERNS + 5 });
        assert!(PatternSet::parse(&many[..MAX_PATTERNS]).is_ok());
    }

    fn segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,12}"
    }

    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(segment(), 1..6).prop_map(|segs| segs.join("."))
    }

    proptest! {
        #[test]
        fn every_valid_name_matches_star_itself_and_its_category(name in name()) {
            let parsed = EventTypeName::parse(&name).unwrap();
            prop_assert_eq!(parsed.as_str(), name.as_str());
            prop_assert!(pat("*").matches(&name));
            prop_assert!(pat(&name).matches(&name));
            let category = name.split('.').next().unwrap();
            prop_assert!(pat(category).matches(&name));
            // Every proper ancestor, as category and as prefix.
            let segments: Vec<&str> = name.split('.').collect();
            for i in 1..segments.len() {
                let ancestor = segments[..i].join(".");
                prop_assert!(pat(&ancestor).matches(&name));
                let prefix = format!("{ancestor}.*");
                prop_assert!(pat(&prefix).matches(&name));
            }
            // A name is never strictly under itself.
            let own_prefix = format!("{name}.*");
            prop_assert!(!pat(&own_prefix).matches(&name));
        }

        #[test]
        fn a_prefix_never_matches_an_unrelated_name(parent in name(), other in name()) {
            let unrelated = other != parent && !other.starts_with(&format!("{parent}."));
            prop_assume!(unrelated);
            let prefix = format!("{parent}.*");
            prop_assert!(!pat(&prefix).matches(&other));
            prop_assert!(!pat(&parent).matches(&other));
        }

        #[test]
        fn a_name_extending_the_last_segment_is_not_under_it(parent in name(), tail in segment()) {
            // `tasks` shares the characters of `task` but is not in its category.
            let longer = format!("{parent}{tail}");
            let prefix = format!("{parent}.*");
            prop_assert!(!pat(&prefix).matches(&longer));
            prop_assert!(!pat(&parent).matches(&longer));
        }

        #[test]
        fn parse_never_panics_and_accepted_names_round_trip(s in "\\PC{0,140}") {
            if let Ok(n) = EventTypeName::parse(&s) {
                prop_assert_eq!(n.as_str(), s.as_str());
                prop_assert!(s.len() <= MAX_NAME_LEN);
            }
            if let Ok(p) = EventTypePattern::parse(&s) {
                prop_assert_eq!(p.to_string(), s);
            }
        }
    }
}
