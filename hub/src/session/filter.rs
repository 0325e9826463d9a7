//! Validation of a subscription's tags filter (`tf`, PROTOCOL.md §2.11). Evaluating it against
//! publication tags is the fan-out's job, later.

use spindle_proto::client::FilterNode;

/// Deepest filter tree accepted; deeper ones are refused (107) before anyone recurses further.
pub(crate) const MAX_FILTER_DEPTH: usize = 32;

/// Whether a filter tree is well formed:
/// - `op` is `""` (a leaf), `and`, `or` (any number of children) or `not` (exactly one);
/// - a leaf's `cmp` is one of `eq neq in nin ex nex sw ew ct gt gte lt lte`;
/// - leaves need a `key`, except `ex` / `nex`, which take neither `val` nor `vals`;
/// - `in` / `nin` need non-empty `vals` and no `val`; the others need a `val` and no `vals`.
pub(crate) fn valid_filter(node: &FilterNode) -> bool {
    valid_at(node, 1)
}

fn valid_at(node: &FilterNode, depth: usize) -> bool {
    if depth > MAX_FILTER_DEPTH {
        return false;
    }
    let children_valid = || node.nodes.iter().all(|child| valid_at(child, depth + 1));
    match node.op.as_str() {
        "" => node.nodes.is_empty() && valid_leaf(node),
        "and" | "or" => children_valid(),
        "not" => node.nodes.len() == 1 && children_valid(),
        _ => false,
    }
}

fn valid_leaf(node: &FilterNode) -> bool {
    match node.cmp.as_str() {
        "ex" | "nex" => node.val.is_empty() && node.vals.is_empty(),
        "in" | "nin" => !node.key.is_empty() && !node.vals.is_empty() && node.val.is_empty(),
        "eq" | "neq" | "sw" | "ew" | "ct" | "gt" | "gte" | "lt" | "lte" => {
            !node.key.is_empty() && !node.val.is_empty() && node.vals.is_empty()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(key: &str, cmp: &str, val: &str, vals: &[&str]) -> FilterNode {
        FilterNode {
            key: key.into(),
            cmp: cmp.into(),
            val: val.into(),
            vals: vals.iter().map(|v| (*v).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn op(op: &str, nodes: Vec<FilterNode>) -> FilterNode {
        FilterNode {
            op: op.into(),
            nodes,
            ..Default::default()
        }
    }

    #[test]
    fn well_formed_trees_pass() {
        assert!(valid_filter(&leaf("k", "eq", "v", &[])));
        assert!(valid_filter(&leaf("k", "in", "", &["a", "b"])));
        assert!(valid_filter(&leaf("", "ex", "", &[])));
        assert!(valid_filter(&leaf("k", "nex", "", &[])));
        assert!(valid_filter(&op(
            "and",
            vec![
                leaf("a", "gt", "1", &[]),
                op("not", vec![leaf("b", "ct", "x", &[])])
            ]
        )));
    }

    #[test]
    fn malformed_trees_fail() {
        assert!(!valid_filter(&leaf("k", "eq", "", &[])));
        assert!(!valid_filter(&leaf("", "eq", "v", &[])));
        assert!(!valid_filter(&leaf("k", "eq", "v", &["w"])));
        assert!(!valid_filter(&leaf("k", "in", "v", &["a"])));
        assert!(!valid_filter(&leaf("k", "nin", "", &[])));
        assert!(!valid_filter(&leaf("k", "ex", "v", &[])));
        assert!(!valid_filter(&leaf("k", "like", "v", &[])));
        assert!(!valid_filter(&op("xor", vec![])));
        assert!(!valid_filter(&op("not", vec![])));
        let two = vec![leaf("a", "eq", "1", &[]), leaf("b", "eq", "2", &[])];
        assert!(!valid_filter(&op("not", two)));
        let mut leaf_with_children = leaf("a", "eq", "1", &[]);
        leaf_with_children.nodes.push(leaf("b", "eq", "2", &[]));
        assert!(!valid_filter(&leaf_with_children));
    }

    #[test]
    fn depth_is_bounded() {
        let mut node = leaf("k", "eq", "v", &[]);
        for _ in 1..MAX_FILTER_DEPTH {
            node = op("not", vec![node]);
        }
        assert!(valid_filter(&node));
        assert!(!valid_filter(&op("not", vec![node])));
    }
}
