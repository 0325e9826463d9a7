//! A subscription's tags filter (`tf`, docs/protocol.md §2.11): validation at subscribe time and
//! evaluation against publication tags (the edge's fan-out calls [`tags_match`]).

use std::cmp::Ordering;
use std::collections::BTreeMap;

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

/// Whether publication `tags` pass `filter` (a tree [`valid_filter`] accepted):
/// - `and`: every child (none: true); `or`: some child (none: false); `not`: not its child;
/// - `eq`, `sw`, `ew`, `ct`: the key is present and its value equals / starts with / ends
///   with / contains `val`; `neq`: absent or different;
/// - `in`: present and one of `vals`; `nin`: absent or none of them;
/// - `ex` / `nex`: present / absent;
/// - `gt`, `gte`, `lt`, `lte`: present and both sides decimal numbers comparing so (anything
///   that is not a number: false).
///
/// A tree deeper than validation allows never matches.
pub fn tags_match(filter: &FilterNode, tags: &BTreeMap<String, String>) -> bool {
    matches_at(filter, tags, 1)
}

fn matches_at(node: &FilterNode, tags: &BTreeMap<String, String>, depth: usize) -> bool {
    if depth > MAX_FILTER_DEPTH {
        return false;
    }
    let child = |n: &FilterNode| matches_at(n, tags, depth + 1);
    match node.op.as_str() {
        "and" => node.nodes.iter().all(child),
        "or" => node.nodes.iter().any(child),
        "not" => node.nodes.len() == 1 && !child(&node.nodes[0]),
        "" => leaf_matches(node, tags.get(&node.key).map(String::as_str)),
        _ => false,
    }
}

fn leaf_matches(node: &FilterNode, value: Option<&str>) -> bool {
    let val = node.val.as_str();
    let in_vals = |v: &str| node.vals.iter().any(|candidate| candidate == v);
    let numeric = |wanted: &[Ordering]| {
        value
            .and_then(|v| compare_decimal(v, val))
            .is_some_and(|ordering| wanted.contains(&ordering))
    };
    match node.cmp.as_str() {
        "eq" => value == Some(val),
        "neq" => value != Some(val),
        "in" => value.is_some_and(in_vals),
        "nin" => !value.is_some_and(in_vals),
        "ex" => value.is_some(),
        "nex" => value.is_none(),
        "sw" => value.is_some_and(|v| v.starts_with(val)),
        "ew" => value.is_some_and(|v| v.ends_with(val)),
        "ct" => value.is_some_and(|v| v.contains(val)),
        "gt" => numeric(&[Ordering::Greater]),
        "gte" => numeric(&[Ordering::Greater, Ordering::Equal]),
        "lt" => numeric(&[Ordering::Less]),
        "lte" => numeric(&[Ordering::Less, Ordering::Equal]),
        _ => false,
    }
}

/// A decimal number split into sign and digits: `[+-]?digits[.digits]` (at least one digit,
/// either side of the point), compared exactly, however long.
struct Decimal<'a> {
    negative: bool,
    /// Integer digits without leading zeros.
    int: &'a str,
    /// Fraction digits without trailing zeros.
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    fn parse(text: &'a str) -> Option<Decimal<'a>> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        // -0 is 0.
        let negative = negative && !(int.is_empty() && frac.is_empty());
        Some(Decimal {
            negative,
            int,
            frac,
        })
    }

    fn magnitude_cmp(&self, other: &Decimal<'_>) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac))
    }
}

/// `a` compared with `b` as decimal numbers; `None` when either is not one.
fn compare_decimal(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (Decimal::parse(a)?, Decimal::parse(b)?);
    Some(match (a.negative, b.negative) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => a.magnitude_cmp(&b),
        (true, true) => b.magnitude_cmp(&a),
    })
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

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn leaves_compare_tags() {
        let t = tags(&[("ticker", "AAPL"), ("price", "187.5"), ("src", "NASDAQ")]);
        let cases = [
            (leaf("ticker", "eq", "AAPL", &[]), true),
            (leaf("ticker", "eq", "MSFT", &[]), false),
            (leaf("missing", "eq", "x", &[]), false),
            (leaf("ticker", "neq", "MSFT", &[]), true),
            (leaf("missing", "neq", "x", &[]), true),
            (leaf("src", "in", "", &["NYSE", "NASDAQ"]), true),
            (leaf("src", "in", "", &["NYSE"]), false),
            (leaf("missing", "in", "", &["x"]), false),
            (leaf("src", "nin", "", &["NYSE"]), true),
            (leaf("missing", "nin", "", &["x"]), true),
            (leaf("ticker", "ex", "", &[]), true),
            (leaf("missing", "ex", "", &[]), false),
            (leaf("missing", "nex", "", &[]), true),
            (leaf("ticker", "sw", "AA", &[]), true),
            (leaf("ticker", "ew", "PL", &[]), true),
            (leaf("ticker", "ct", "AP", &[]), true),
            (leaf("ticker", "ct", "Z", &[]), false),
            (leaf("price", "gt", "100", &[]), true),
            (leaf("price", "gt", "187.5", &[]), false),
            (leaf("price", "gte", "187.50", &[]), true),
            (leaf("price", "lt", "1000", &[]), true),
            (leaf("price", "lte", "-5", &[]), false),
            (leaf("ticker", "gt", "1", &[]), false),
            (leaf("price", "gt", "abc", &[]), false),
            (leaf("missing", "lt", "1", &[]), false),
        ];
        for (node, expected) in cases {
            assert_eq!(tags_match(&node, &t), expected, "{node:?}");
        }
    }

    #[test]
    fn operators_combine() {
        let t = tags(&[("a", "1"), ("b", "2")]);
        let a = leaf("a", "eq", "1", &[]);
        let not_b = leaf("b", "eq", "3", &[]);
        assert!(tags_match(
            &op("and", vec![a.clone(), op("not", vec![not_b.clone()])]),
            &t
        ));
        assert!(!tags_match(&op("and", vec![a.clone(), not_b.clone()]), &t));
        assert!(tags_match(&op("or", vec![not_b.clone(), a.clone()]), &t));
        assert!(!tags_match(&op("or", vec![]), &t));
        assert!(tags_match(&op("and", vec![]), &t));
        assert!(!tags_match(&op("not", vec![a]), &t));
    }

    #[test]
    fn decimals_compare_exactly() {
        use Ordering::*;
        let cases = [
            ("1", "1.0", Equal),
            ("-0", "0", Equal),
            ("007", "7", Equal),
            ("10", "9.99", Greater),
            ("-10", "-9", Less),
            ("-1", "1", Less),
            (".5", "0.49", Greater),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567891",
                Less,
            ),
            ("+2", "2", Equal),
        ];
        for (a, b, expected) in cases {
            assert_eq!(compare_decimal(a, b), Some(expected), "{a} vs {b}");
        }
        for bad in ["", "-", ".", "1e5", "1.2.3", "abc", " 1"] {
            assert_eq!(compare_decimal(bad, "1"), None, "{bad:?}");
        }
    }
}
