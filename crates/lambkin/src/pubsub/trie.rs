//! The subscription trie: filters stored level by level, so a publish visits only the
//! branches its topic can reach (its exact levels, `+`, and `#`) instead of testing every
//! filter.
//!
//! Nodes live in one arena and refer to each other by index, so no operation recurses: a
//! filter or topic with a million levels costs a million steps, never a million stack frames,
//! and dropping the trie is dropping a `Vec`. Branches left without subscriptions are pruned
//! as soon as their last subscription leaves.

use std::collections::HashMap;

use super::topic::{Filter, FilterLevel};

type NodeId = usize;

const ROOT: NodeId = 0;

/// Which edge of its parent leads to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Label {
    Root,
    Exact(Box<str>),
    Single,
}

#[derive(Debug)]
struct Node<K> {
    parent: NodeId,
    label: Label,
    children: HashMap<Box<str>, NodeId>,
    /// The `+` child.
    single: Option<NodeId>,
    /// Filters that end at this node.
    here: Vec<K>,
    /// Filters that end in `#` right below this node: they match any topic that has at least
    /// one more level.
    rest: Vec<K>,
}

impl<K> Node<K> {
    fn new(parent: NodeId, label: Label) -> Self {
        Self {
            parent,
            label,
            children: HashMap::new(),
            single: None,
            here: Vec::new(),
            rest: Vec::new(),
        }
    }

    fn is_unused(&self) -> bool {
        self.children.is_empty()
            && self.single.is_none()
            && self.here.is_empty()
            && self.rest.is_empty()
    }
}

/// Keys (subscription ids) stored under filters, found by concrete topic.
#[derive(Debug)]
pub struct Trie<K> {
    nodes: Vec<Node<K>>,
    /// Arena slots of pruned nodes, reused before the arena grows.
    free: Vec<NodeId>,
    keys: usize,
}

impl<K> Default for Trie<K> {
    fn default() -> Self {
        Self {
            nodes: vec![Node::new(ROOT, Label::Root)],
            free: Vec::new(),
            keys: 0,
        }
    }
}

impl<K: Copy + Eq> Trie<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// Nodes in use, the root included: 1 when empty, since branches are pruned.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Stores `key` under `filter`. The same key may be stored under several filters, and a
    /// filter may hold several keys; storing the same pair twice stores it twice.
    pub fn insert(&mut self, filter: &Filter, key: K) {
        let mut at = ROOT;
        for level in filter.levels() {
            at = match level {
                FilterLevel::Multi => {
                    self.nodes[at].rest.push(key);
                    self.keys += 1;
                    return;
                }
                FilterLevel::Single => match self.nodes[at].single {
                    Some(child) => child,
                    None => {
                        let child = self.alloc(Node::new(at, Label::Single));
                        self.nodes[at].single = Some(child);
                        child
                    }
                },
                FilterLevel::Exact(exact) => match self.nodes[at].children.get(exact) {
                    Some(&child) => child,
                    None => {
                        let child = self.alloc(Node::new(at, Label::Exact(exact.into())));
                        self.nodes[at].children.insert(exact.into(), child);
                        child
                    }
                },
            };
        }
        self.nodes[at].here.push(key);
        self.keys += 1;
    }

    /// Removes one `key` stored under `filter`, pruning the branch it leaves empty. False when
    /// the pair was not stored.
    pub fn remove(&mut self, filter: &Filter, key: K) -> bool {
        let mut at = ROOT;
        let mut in_rest = false;
        for level in filter.levels() {
            let next = match level {
                FilterLevel::Multi => {
                    in_rest = true;
                    break;
                }
                FilterLevel::Single => self.nodes[at].single,
                FilterLevel::Exact(exact) => self.nodes[at].children.get(exact).copied(),
            };
            match next {
                Some(child) => at = child,
                None => return false,
            }
        }
        let node = &mut self.nodes[at];
        let bucket = if in_rest {
            &mut node.rest
        } else {
            &mut node.here
        };
        let Some(position) = bucket.iter().position(|k| *k == key) else {
            return false;
        };
        // Order within a bucket carries no meaning.
        bucket.swap_remove(position);
        self.keys -= 1;
        self.prune(at);
        true
    }

    /// Appends to `out` every key whose filter matches `topic` (a concrete topic), each once
    /// per filter it is stored under, in no particular order.
    pub fn matches(&self, topic: &str, out: &mut Vec<K>) {
        // The nodes whose filters match the levels seen so far. They are distinct: each is
        // reached by the one path from the root that spells it.
        let mut frontier = vec![ROOT];
        let mut next = Vec::new();
        for level in topic.split('/') {
            for &at in &frontier {
                let node = &self.nodes[at];
                out.extend_from_slice(&node.rest);
                if let Some(&child) = node.children.get(level) {
                    next.push(child);
                }
                if let Some(child) = node.single {
                    next.push(child);
                }
            }
            std::mem::swap(&mut frontier, &mut next);
            next.clear();
            if frontier.is_empty() {
                return;
            }
        }
        for &at in &frontier {
            out.extend_from_slice(&self.nodes[at].here);
        }
    }

    fn alloc(&mut self, node: Node<K>) -> NodeId {
        match self.free.pop() {
            Some(id) => {
                self.nodes[id] = node;
                id
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        }
    }

    /// Detaches `at` and its ancestors while they hold nothing.
    fn prune(&mut self, mut at: NodeId) {
        while at != ROOT && self.nodes[at].is_unused() {
            let parent = self.nodes[at].parent;
            let label = std::mem::replace(&mut self.nodes[at].label, Label::Root);
            match label {
                Label::Exact(exact) => {
                    self.nodes[parent].children.remove(&exact);
                }
                Label::Single => self.nodes[parent].single = None,
                Label::Root => {}
            }
            // Release the slot's allocations now; the slot itself waits in `free`.
            self.nodes[at] = Node::new(ROOT, Label::Root);
            self.free.push(at);
            at = parent;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn filter(text: &str) -> Filter {
        Filter::parse(text).unwrap()
    }

    fn matching(trie: &Trie<u32>, topic: &str) -> Vec<u32> {
        let mut out = Vec::new();
        trie.matches(topic, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn finds_exact_single_and_multi_level_filters() {
        let mut trie = Trie::new();
        for (key, f) in [
            "a/b", "a/+", "a/#", "#", "+/b", "+", "a", "b/#", "a/b/c", "+/+/+",
        ]
        .iter()
        .enumerate()
        {
            trie.insert(&filter(f), key as u32);
        }
        assert_eq!(matching(&trie, "a/b"), [0, 1, 2, 3, 4]);
        assert_eq!(matching(&trie, "a"), [3, 5, 6]);
        assert_eq!(matching(&trie, "a/b/c"), [2, 3, 8, 9]);
        assert_eq!(matching(&trie, "b"), [3, 5]);
        assert_eq!(matching(&trie, "b/x"), [3, 7]);
        assert_eq!(matching(&trie, "x/b"), [3, 4]);
        assert_eq!(matching(&trie, "c/d/e/f"), [3]);
    }

    #[test]
    fn keys_under_the_same_filter_are_all_found_and_removed_one_at_a_time() {
        let mut trie = Trie::new();
        let f = filter("x/+/z");
        trie.insert(&f, 1);
        trie.insert(&f, 2);
        trie.insert(&filter("x/#"), 1);
        assert_eq!(trie.len(), 3);
        assert_eq!(matching(&trie, "x/y/z"), [1, 1, 2]);
        assert!(trie.remove(&f, 1));
        assert!(!trie.remove(&f, 1));
        assert_eq!(matching(&trie, "x/y/z"), [1, 2]);
        assert!(
            !trie.remove(&filter("x/y/z"), 2),
            "stored under x/+/z, not x/y/z"
        );
        assert!(!trie.remove(&filter("nothing/here"), 2));
        assert_eq!(trie.len(), 2);
    }

    #[test]
    fn removing_the_last_key_prunes_its_branch() {
        let mut trie = Trie::new();
        trie.insert(&filter("a/b/c/d"), 1);
        trie.insert(&filter("a/b/+/#"), 2);
        trie.insert(&filter("a"), 3);
        assert_eq!(trie.node_count(), 6);
        assert!(trie.remove(&filter("a/b/c/d"), 1));
        // a, a/b and a/b/+ remain.
        assert_eq!(trie.node_count(), 4);
        assert!(trie.remove(&filter("a/b/+/#"), 2));
        assert_eq!(trie.node_count(), 2);
        assert!(trie.remove(&filter("a"), 3));
        assert_eq!(trie.node_count(), 1);
        assert!(trie.is_empty());
        // Freed slots are reused.
        trie.insert(&filter("p/q"), 4);
        assert_eq!(trie.nodes.len(), 6);
        assert_eq!(matching(&trie, "p/q"), [4]);
    }

    #[test]
    fn very_deep_filters_and_topics_do_not_recurse() {
        // As deep as a filter can be: one-byte levels up to the longest filter taken. Recursing
        // this deep would overflow a test thread's 2 MiB stack.
        let depth = (crate::pubsub::topic::MAX_TOPIC_LEN - 2) / 2;
        let deep = vec!["l"; depth].join("/");
        let mut trie = Trie::new();
        trie.insert(&filter(&deep), 1);
        trie.insert(&filter(&format!("{deep}/#")), 2);
        assert_eq!(matching(&trie, &deep), [1]);
        assert_eq!(matching(&trie, &format!("{deep}/x")), [2]);
        assert!(trie.remove(&filter(&deep), 1));
        assert_eq!(trie.node_count(), depth + 1);
        drop(trie);
    }

    fn level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "$s", "ab"])
    }

    /// A valid publish topic: the levels above, joined; never empty.
    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..6)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("a topic is not empty", |t| !t.is_empty())
    }

    /// A valid filter over the same levels, with `+` anywhere and `#` at the end.
    fn filter_text() -> impl Strategy<Value = String> {
        let filter_level = prop_oneof![
            3 => level().prop_map(str::to_owned),
            1 => Just("+".to_owned()),
        ];
        (
            prop::collection::vec(filter_level, 1..6),
            any::<bool>(),
            prop::bool::weighted(0.05),
        )
            .prop_map(|(mut levels, multi, only_multi)| {
                if only_multi {
                    return "#".to_owned();
                }
                if multi {
                    levels.push("#".to_owned());
                }
                levels.join("/")
            })
            .prop_filter("a filter is not empty", |f| !f.is_empty())
    }

    fn naive(filters: &[(u32, Filter)], topic: &str) -> Vec<u32> {
        let mut out: Vec<u32> = filters
            .iter()
            .filter(|(_, f)| f.matches(topic))
            .map(|(k, _)| *k)
            .collect();
        out.sort_unstable();
        out
    }

    proptest! {
        /// The trie finds exactly what testing every filter finds, before and after removals,
        /// and leaves nothing behind once every key is gone.
        #[test]
        fn trie_agrees_with_the_naive_matcher(
            filters in prop::collection::vec(filter_text(), 0..40),
            topics in prop::collection::vec(topic(), 1..20),
            removed in prop::collection::vec(any::<bool>(), 40),
        ) {
            let mut stored: Vec<(u32, Filter)> = filters
                .iter()
                .enumerate()
                .map(|(k, f)| (k as u32, filter(f)))
                .collect();
            let mut trie = Trie::new();
            for (k, f) in &stored {
                trie.insert(f, *k);
            }
            for t in &topics {
                prop_assert_eq!(matching(&trie, t), naive(&stored, t), "topic {:?}", t);
            }

            let mut kept = Vec::new();
            for (i, (k, f)) in stored.drain(..).enumerate() {
                if removed[i] {
                    prop_assert!(trie.remove(&f, k));
                } else {
                    kept.push((k, f));
                }
            }
            for t in &topics {
                prop_assert_eq!(matching(&trie, t), naive(&kept, t), "topic {:?}", t);
            }

            for (k, f) in &kept {
                prop_assert!(trie.remove(f, *k));
            }
            prop_assert!(trie.is_empty());
            prop_assert_eq!(trie.node_count(), 1);
        }
    }
}
