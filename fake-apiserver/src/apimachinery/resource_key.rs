//! Which storage a resource lives in: [`ResourceKey`] (group and plural),
//! and [`parse_resource`] for the `plural.group` spelling tests, fault rules
//! and webhook rules use.

/// Identifies a resource's storage: objects of every version of a resource
/// share one table, keyed by group and plural.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// API group ("" for core).
    pub group: String,
    /// Plural resource name.
    pub plural: String,
}

impl ResourceKey {
    /// A key for `group` and `plural`.
    pub fn new(group: &str, plural: &str) -> Self {
        ResourceKey {
            group: group.into(),
            plural: plural.into(),
        }
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.plural)
        } else {
            write!(f, "{}.{}", self.plural, self.group)
        }
    }
}

/// Parses `plural` or `plural.group` (`configmaps`, `deployments.apps`,
/// `widgets.example.com`).
pub fn parse_resource(s: &str) -> ResourceKey {
    match s.split_once('.') {
        Some((plural, group)) => ResourceKey::new(group, plural),
        None => ResourceKey::new("", s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_should_parse_plural_and_group() {
        assert_eq!(
            parse_resource("configmaps"),
            ResourceKey::new("", "configmaps")
        );
        assert_eq!(
            parse_resource("widgets.example.com"),
            ResourceKey::new("example.com", "widgets")
        );
    }
}
