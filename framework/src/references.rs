//! References: which resource, and why a handler runs. Plain data at the
//! bottom of the layers (with `structs`), used by every layer above.

use std::fmt;

/// A resource to handle: `group/version/plural` (group "" for the core
/// API), or a name (kind, plural, singular or short name) resolved through
/// discovery when the operator starts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural name.
    pub plural: String,
    /// A name to resolve through discovery (`Resource::named`).
    pub(crate) lookup: Option<String>,
}

impl Resource {
    /// `group/version/plural`.
    pub fn new(group: &str, version: &str, plural: &str) -> Self {
        Resource {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            lookup: None,
        }
    }

    /// A resource known by its kind, plural, singular or short name
    /// (`KopfExample`, `kopfexamples`, `kex`), optionally `name.group`;
    /// resolved through discovery at start (the preferred version).
    pub fn named(name: &str) -> Self {
        Resource {
            group: String::new(),
            version: String::new(),
            plural: String::new(),
            lookup: Some(name.into()),
        }
    }

    /// The resource of a typed kube object, e.g. a `#[derive(CustomResource)]` struct.
    pub fn of<K: kube::Resource<DynamicType = ()>>() -> Self {
        Resource::new(&K::group(&()), &K::version(&()), &K::plural(&()))
    }

    /// `apiVersion` of the resource.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.lookup {
            return f.write_str(name);
        }
        if self.group.is_empty() {
            write!(f, "{}/{}", self.version, self.plural)
        } else {
            write!(f, "{}/{}/{}", self.group, self.version, self.plural)
        }
    }
}

/// Why a handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The object is new (no diff-base).
    Create,
    /// The object's essence changed.
    Update,
    /// The object is being deleted.
    Delete,
    /// The operator (re)started and found the object unchanged.
    Resume,
    /// Any watch event (fire-and-forget handlers).
    Event,
    /// Once when the operator starts, before it handles anything.
    Startup,
    /// Once when the operator stops, after it handled everything.
    Cleanup,
    /// A long-running task per object.
    Daemon,
    /// A periodic handler per object.
    Timer,
    /// Builds an in-memory index across objects.
    Index,
    /// Reports the operator's health (on the liveness endpoint).
    Probe,
    /// Admits or denies API requests (a validating admission webhook).
    Validate,
    /// Changes objects before they are stored (a mutating admission webhook).
    Mutate,
}

impl Reason {
    /// `create`, `update`, `delete`, `resume` (Kopf's purpose names).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Create => "create",
            Reason::Update => "update",
            Reason::Delete => "delete",
            Reason::Resume => "resume",
            Reason::Event => "event",
            Reason::Startup => "startup",
            Reason::Cleanup => "cleanup",
            Reason::Daemon => "daemon",
            Reason::Timer => "timer",
            Reason::Index => "index",
            Reason::Probe => "probe",
            Reason::Validate => "validate",
            Reason::Mutate => "mutate",
        }
    }

    /// `creation`, `updating`, `deletion`, `resuming` (Kopf's cause titles).
    pub fn title(self) -> &'static str {
        match self {
            Reason::Create => "creation",
            Reason::Update => "updating",
            Reason::Delete => "deletion",
            Reason::Resume => "resuming",
            Reason::Event => "event",
            Reason::Startup => "startup",
            Reason::Cleanup => "cleanup",
            Reason::Daemon => "daemon",
            Reason::Timer => "timer",
            Reason::Index => "indexing",
            Reason::Probe => "probe",
            Reason::Validate => "validation",
            Reason::Mutate => "mutation",
        }
    }

    /// Whether the handler answers admission requests (not watch events).
    pub fn is_admission(self) -> bool {
        matches!(self, Reason::Validate | Reason::Mutate)
    }

    /// Whether the handler runs beside the object, for as long as it
    /// exists (daemons and timers).
    pub fn is_spawning(self) -> bool {
        matches!(self, Reason::Daemon | Reason::Timer)
    }

    /// Whether handlers of this reason belong to a resource.
    pub fn is_resource_bound(self) -> bool {
        !matches!(
            self,
            Reason::Startup | Reason::Cleanup | Reason::Probe | Reason::Validate | Reason::Mutate
        )
    }
}

/// Whether `name` matches Kopf's namespace pattern: comma-separated globs
/// (spaces around them ignored), each inclusive or, with a leading `!`,
/// exclusive. Read left to right: the first inclusive glob decides the
/// initial match (a leading exclusive glob implies `*` before it); an
/// exclusive glob un-matches; a later inclusive glob re-matches only what
/// the first one matched. So `myapp-*,!*-pr-*,*pr-123` serves `myapp-live`
/// and `myapp-pr-123` but neither `myapp-pr-456` nor `other-pr-123`.
pub fn match_namespace(name: &str, pattern: &str) -> bool {
    let mut globs: Vec<&str> = pattern.split(',').map(str::trim).collect();
    if globs.first().is_none_or(|g| g.starts_with('!')) {
        globs.insert(0, "*");
    }
    let first = glob_match(globs[0], name);
    let mut matches = first;
    for glob in &globs[1..] {
        match glob.strip_prefix('!') {
            Some(excluded) => matches = matches && !glob_match(excluded, name),
            None => matches = matches || (first && glob_match(glob, name)),
        }
    }
    matches
}

/// The patterns that are plain namespace names (no `*`, `?`, `[`, `!` or
/// `,`): what is served when namespaces cannot be listed, as in Kopf.
pub(crate) fn specific_namespaces(patterns: &[String]) -> Vec<String> {
    let mut names: Vec<String> = patterns
        .iter()
        .filter(|p| is_plain_namespace(p))
        .map(|p| p.trim().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether a namespace pattern is a plain name (no glob, negation or list).
pub(crate) fn is_plain_namespace(pattern: &str) -> bool {
    !pattern.contains(['!', '*', '?', '[', ','])
}

/// One element of a glob.
#[derive(Debug, PartialEq)]
enum Token {
    /// `*`: any run of characters.
    Any,
    /// `?`: one character.
    One,
    /// `[...]` or `[!...]`: one character in (or not in) the ranges.
    Class(bool, Vec<(char, char)>),
    /// Itself.
    Literal(char),
}

impl Token {
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Any | Token::One => true,
            Token::Class(negated, ranges) => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
            Token::Literal(l) => *l == c,
        }
    }
}

/// Parses a shell glob as Python's `fnmatch` reads it: `*`, `?`, `[seq]`,
/// `[!seq]` with ranges; an unclosed `[` is a literal.
fn tokens(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push(Token::Any),
            '?' => out.push(Token::One),
            '[' => {
                let mut j = i + 1;
                let negated = chars.get(j) == Some(&'!');
                if negated {
                    j += 1;
                }
                // A `]` right after the opening is a member, as in fnmatch.
                let start = j;
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    out.push(Token::Literal('['));
                } else {
                    let members = &chars[start..j];
                    let mut ranges = Vec::new();
                    let mut k = 0;
                    while k < members.len() {
                        if k + 2 < members.len() && members[k + 1] == '-' {
                            ranges.push((members[k], members[k + 2]));
                            k += 3;
                        } else {
                            ranges.push((members[k], members[k]));
                            k += 1;
                        }
                    }
                    out.push(Token::Class(negated, ranges));
                    i = j;
                }
            }
            c => out.push(Token::Literal(c)),
        }
        i += 1;
    }
    out
}

/// Whether `name` matches the glob `pattern` as a whole (`fnmatch`, case
/// sensitive as on POSIX).
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let p = tokens(pattern);
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] != Token::Any && p[pi].accepts(n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == Token::Any {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|t| *t == Token::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_should_match_like_fnmatch() {
        assert!(glob_match("team-*", "team-a"));
        assert!(glob_match("team-*", "team-"));
        assert!(!glob_match("team-*", "other"));
        assert!(glob_match("t?am-*-x", "team-blue-x"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("ns-[0-9]", "ns-7"));
        assert!(!glob_match("ns-[0-9]", "ns-x"));
        assert!(glob_match("ns-[!0-9]", "ns-x"));
        assert!(glob_match("ns-[ab]*", "ns-beta"));
        assert!(glob_match("a[", "a["));
        assert!(!glob_match("Team-*", "team-a"));
    }

    #[test]
    fn namespace_patterns_should_read_as_kopfs() {
        // The examples of Kopf's documentation (match_namespace).
        let p = "myapp-*, !*-pr-*, *pr-123";
        assert!(match_namespace("myapp-test", p));
        assert!(match_namespace("myapp-live", p));
        assert!(match_namespace("myapp-pr-123", p));
        assert!(!match_namespace("myapp-pr-456", p));
        assert!(!match_namespace("otherapp-pr-123", p));
        let p = "!*-pr-*, *pr-123";
        assert!(match_namespace("myapp-test", p));
        assert!(match_namespace("anyapp-anything", p));
        assert!(match_namespace("otherapp-pr-123", p));
        assert!(!match_namespace("myapp-pr-456", p));
        assert!(match_namespace("default", "!kube-*"));
        assert!(!match_namespace("kube-system", "!kube-*"));
        assert!(match_namespace("default", "default"));
        assert!(!match_namespace("default2", "default"));
    }

    #[test]
    fn only_plain_names_should_be_specific() {
        let patterns: Vec<String> = ["a", "b-*", "!c", "d,e", " f ", "a", "g?", "h[0-9]"]
            .map(String::from)
            .to_vec();
        assert_eq!(specific_namespaces(&patterns), ["a", "f"]);
    }
}
