//! `Keyed<V>`: values by `String` key, for maps that only grow (insert, overwrite,
//! look up; nothing is removed: a map that forgets holds `Option`s) — the tables read
//! from files (aliases, virtual, the `--auth-file` users, the smarthost credentials) and
//! what delivery remembers by destination (alert times, MTA-STS policies).
//!
//! The hash map holds positions in a list, so every such map in the binary, whatever
//! its values, is one `HashMap<String, usize>`: a `HashMap<String, V>` per value type
//! is a copy of the hashing, growing and lookup code each (1–2.5 KB on mipsel). The
//! list keeps the order of insertion, which is the file order of a table.

use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Keyed<V> {
    index: HashMap<String, usize>,
    values: Vec<V>,
}

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Keyed {
            index: HashMap::new(),
            values: Vec::new(),
        }
    }
}

impl<V> Keyed<V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        self.index.get(key).map(|&i| &self.values[i])
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.index.get(key).map(|&i| &mut self.values[i])
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values in the order they were first inserted.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.values.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Every key with its value, in the hash map's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.index
            .iter()
            .map(|(k, &i)| (k.as_str(), &self.values[i]))
    }

    /// Sets the value of `key`, replacing the one it had.
    pub fn insert(&mut self, key: String, value: V) {
        match self.index.get(key.as_str()) {
            Some(&i) => self.values[i] = value,
            None => {
                self.index.insert(key, self.values.len());
                self.values.push(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Keyed;

    #[test]
    fn inserts_replace_and_lookups_find() {
        let mut k = Keyed::default();
        assert_eq!(k.get("a"), None);
        k.insert("a".to_string(), 1);
        k.insert("b".to_string(), 2);
        k.insert("a".to_string(), 3);
        assert_eq!(
            (k.get("a"), k.get("b"), k.get("c")),
            (Some(&3), Some(&2), None)
        );
        assert_eq!(k.values.len(), 2);
        *k.get_mut("b").unwrap() += 5;
        assert_eq!(k.get("b"), Some(&7));
        assert_eq!(k.get_mut("c"), None);
    }
}
