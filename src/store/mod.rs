//! The only place with SQL: typed parameters in, typed rows out; long statements are `.sql` files
//! under `sql/`, named parameters documented in each file.

pub mod attempts;
pub mod audit;
pub mod cluster;
pub mod events;
pub mod jsonb;
pub mod keys;
pub mod lockouts;
pub mod members;
pub mod metrics;
pub mod organizations;
pub mod outbox;
pub mod remembered_devices;
pub mod sessions;
pub mod sms;
pub mod sms_workers;
pub mod spi;
pub mod totp;
pub mod webauthn;

/// A statement's text without its comments, for tests of what a statement contains.
#[cfg(test)]
pub(crate) fn without_comments(sql: &str) -> String {
    sql.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `items` grouped by `key`, each group in the items' order, the groups in the order of their
/// first item (what goes organization by organization on Citus, or member by member).
pub fn grouped_by<T>(items: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<(String, Vec<T>)> {
    let mut groups: Vec<(String, Vec<T>)> = Vec::new();
    for item in items {
        match groups.iter().position(|(k, _)| k == key(&item)) {
            Some(at) => groups[at].1.push(item),
            None => groups.push((key(&item).to_string(), vec![item])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    #[test]
    fn items_are_grouped_in_order() {
        let items = vec![("b", 1), ("a", 2), ("b", 3)];
        assert_eq!(
            super::grouped_by(items, |i| i.0),
            vec![
                ("b".to_string(), vec![("b", 1), ("b", 3)]),
                ("a".to_string(), vec![("a", 2)])
            ]
        );
    }
}
