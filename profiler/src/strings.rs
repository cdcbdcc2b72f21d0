//! The trace's interned strings (STRING records): module paths and marker
//! texts, referred to by id so that each is written once.

use std::collections::HashMap;

/// Interned strings by id.
#[derive(Clone, Debug, Default)]
pub struct Strings {
    by_id: HashMap<u64, String>,
}

impl Strings {
    /// Records string `id`. A repeated id replaces the earlier text.
    pub fn insert(&mut self, id: u64, text: String) {
        self.by_id.insert(id, text);
    }

    /// The text of string `id`, if the trace defined it.
    pub fn get(&self, id: u64) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    /// How many strings are known.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no string is known.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
