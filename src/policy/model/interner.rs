//! One shared copy of the strings that cached objects repeat: class names, namespaces, label
//! keys and values, and whole label sets (PVs made by one provisioner or one script mostly carry
//! the same few). A cluster with 50,000 PVs holds a handful of distinct classes and label sets;
//! keeping one `Arc` of each instead of a copy per object is most of what the PV and claim
//! caches save.
//!
//! Owns the sharing only: what is read of an object is [`super::volumes`]'s business. An
//! interner belongs to one cache (one writer), and forgets what no entry holds any more when it
//! has doubled since it last looked ([`Interner::sweep_if_grown`]), so a churn of unique values
//! does not keep them forever.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Below this many entries the interner never sweeps: a small one costs nothing.
const MIN_SWEEP: usize = 1024;

/// An object's labels, sorted by key, shared by every object with the same set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Labels(Arc<[(Arc<str>, Arc<str>)]>);

impl Labels {
    /// The value of `key`, if the object has that label.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether both are the one shared copy of a set.
    pub fn ptr_eq(&self, other: &Labels) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// `(key, value)` pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

// Lets the set of label sets be searched with a slice built on the stack of the caller.
impl Borrow<[(Arc<str>, Arc<str>)]> for Labels {
    fn borrow(&self) -> &[(Arc<str>, Arc<str>)] {
        &self.0
    }
}

/// Shared strings and label sets (see the module docs).
#[derive(Debug, Default)]
pub struct Interner {
    strings: HashSet<Arc<str>>,
    label_sets: HashSet<Labels>,
    /// Size at which [`Interner::sweep_if_grown`] next sweeps (0: [`MIN_SWEEP`]).
    sweep_at: usize,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(s);
        self.strings.insert(shared.clone());
        shared
    }

    /// The shared copy of a label set; `None` for no labels (kept as nothing at all).
    pub fn labels(&mut self, labels: &BTreeMap<String, String>) -> Option<Labels> {
        if labels.is_empty() {
            return None;
        }
        // A BTreeMap iterates in key order: the pairs come out sorted, as `get` needs.
        let pairs: Vec<(Arc<str>, Arc<str>)> = labels
            .iter()
            .map(|(k, v)| (self.intern(k), self.intern(v)))
            .collect();
        if let Some(shared) = self.label_sets.get(pairs.as_slice()) {
            return Some(shared.clone());
        }
        let shared = Labels(pairs.into());
        self.label_sets.insert(shared.clone());
        Some(shared)
    }

    /// Strings and label sets held.
    pub fn len(&self) -> usize {
        self.strings.len() + self.label_sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every string and label set that nothing but the interner holds.
    pub fn sweep(&mut self) {
        // Sets first: a forgotten set releases its strings.
        self.label_sets.retain(|l| Arc::strong_count(&l.0) > 1);
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        self.label_sets.shrink_to_fit();
        self.strings.shrink_to_fit();
        self.sweep_at = (2 * self.len()).max(MIN_SWEEP);
    }

    /// Sweeps when the interner has doubled since the last sweep: amortized, each object
    /// reduced pays a constant share of the sweeps.
    pub fn sweep_if_grown(&mut self) {
        if self.len() >= self.sweep_at.max(MIN_SWEEP) {
            self.sweep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn equal_strings_share_one_copy() {
        let mut i = Interner::default();
        let a = i.intern("local-storage");
        let b = i.intern(&String::from("local-storage"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &i.intern("gp3")));
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn equal_label_sets_share_one_copy_and_their_strings() {
        let mut i = Interner::default();
        let a = i.labels(&map(&[("rack", "r1"), ("disk", "nvme")])).unwrap();
        let b = i.labels(&map(&[("disk", "nvme"), ("rack", "r1")])).unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        let c = i.labels(&map(&[("disk", "nvme"), ("rack", "r2")])).unwrap();
        assert!(!Arc::ptr_eq(&a.0, &c.0));
        assert_ne!(a, c);
        assert!(Arc::ptr_eq(&a.0[0].1, &c.0[0].1), "nvme stored once");
        assert!(i.labels(&BTreeMap::new()).is_none());
    }

    #[test]
    fn labels_are_found_by_key() {
        let mut i = Interner::default();
        let l = i
            .labels(&map(&[("zone", "a"), ("disk", "ssd"), ("", "empty-key")]))
            .unwrap();
        assert_eq!(l.get("disk"), Some("ssd"));
        assert_eq!(l.get("zone"), Some("a"));
        assert_eq!(l.get(""), Some("empty-key"));
        assert_eq!(l.get("rack"), None);
        assert_eq!(l.len(), 3);
        assert_eq!(
            l.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["", "disk", "zone"]
        );
    }

    #[test]
    fn a_sweep_forgets_only_what_nothing_else_holds() {
        let mut i = Interner::default();
        let kept = i.intern("kept");
        let labels = i.labels(&map(&[("disk", "nvme")])).unwrap();
        drop(i.intern("dropped"));
        drop(i.labels(&map(&[("old", "x")])));
        assert_eq!(i.len(), 8, "kept, disk, nvme, dropped, old, x and two sets");
        i.sweep();
        assert_eq!(i.len(), 4, "kept, disk, nvme and their set");
        assert!(Arc::ptr_eq(&kept, &i.intern("kept")));
        assert!(Arc::ptr_eq(
            &labels.0,
            &i.labels(&map(&[("disk", "nvme")])).unwrap().0
        ));
        assert_eq!(i.len(), 4);
    }

    #[test]
    fn sweeps_only_once_doubled() {
        let mut i = Interner::default();
        for n in 0..MIN_SWEEP - 1 {
            drop(i.intern(&n.to_string()));
        }
        i.sweep_if_grown();
        assert_eq!(i.len(), MIN_SWEEP - 1, "too small to sweep");
        let held: Vec<_> = (0..MIN_SWEEP).map(|n| i.intern(&format!("h{n}"))).collect();
        i.sweep_if_grown();
        assert_eq!(i.len(), MIN_SWEEP, "the unheld ones are gone");
        drop(i.intern("one more"));
        i.sweep_if_grown();
        assert_eq!(i.len(), MIN_SWEEP + 1, "not doubled since the sweep");
        drop(held);
    }
}
