//! The call-stack trie of a trace (FRAME records).
//!
//! A stack id names a node; the node adds one *inner* frame (a return
//! address) to its parent's stack, and id 0 is the empty stack. Every node
//! also remembers which loaded module its address fell in when the FRAME
//! record arrived, because a module can be unloaded and another loaded at
//! the same addresses later: the module map of that moment is the right one.

use crate::hash::IdMap;

/// A stack id (a trie node; 0 is the empty stack).
pub type StackId = u64;

/// One node of the trie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackNode {
    /// The caller's stack.
    pub parent: StackId,
    /// The return address this node adds (the innermost frame of its stack).
    pub address: u64,
    /// Index into the model's module list of the module holding `address`,
    /// as loaded when the node was defined.
    pub module: Option<usize>,
}

/// The call-stack trie.
#[derive(Clone, Debug, Default)]
pub struct Stacks {
    nodes: IdMap<StackId, StackNode>,
}

/// Stacks deeper than this are cut: a corrupt or cyclic trie must not make
/// a reader loop forever.
pub const MAX_DEPTH: usize = 4096;

impl Stacks {
    /// Defines node `id`.
    pub fn insert(&mut self, id: StackId, node: StackNode) {
        if id != 0 {
            self.nodes.insert(id, node);
        }
    }

    /// Node `id`, if defined.
    pub fn node(&self, id: StackId) -> Option<&StackNode> {
        self.nodes.get(&id)
    }

    /// How many nodes are defined.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node is defined.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The frames of stack `id`, innermost first. Stops at the root, at an
    /// undefined node, or after [`MAX_DEPTH`] frames.
    pub fn frames(&self, id: StackId) -> Vec<StackNode> {
        let mut out = Vec::new();
        let mut at = id;
        while at != 0 && out.len() < MAX_DEPTH {
            let Some(node) = self.nodes.get(&at) else {
                break;
            };
            out.push(*node);
            at = node.parent;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_walk_from_the_innermost_to_the_root_and_survive_cycles() {
        let mut s = Stacks::default();
        let node = |parent, address| StackNode {
            parent,
            address,
            module: None,
        };
        s.insert(1, node(0, 0x100));
        s.insert(2, node(1, 0x200));
        s.insert(3, node(2, 0x300));
        let addrs: Vec<u64> = s.frames(3).iter().map(|n| n.address).collect();
        assert_eq!(addrs, [0x300, 0x200, 0x100]);
        assert!(s.frames(0).is_empty());
        assert!(s.frames(99).is_empty());
        s.insert(5, node(6, 1));
        s.insert(6, node(5, 2));
        assert_eq!(s.frames(5).len(), MAX_DEPTH);
    }
}
