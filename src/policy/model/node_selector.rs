//! Node selectors as the scheduler evaluates them against nodes: a PersistentVolume's
//! `spec.nodeAffinity.required` (`k8s.io/component-helpers/scheduling/corev1/nodeaffinity`,
//! `NodeSelector.Match`): terms are ORed, the requirements of one term ANDed, an empty term
//! matches nothing, and every operator applies (`In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`,
//! `Lt`; `Exists` on `kubernetes.io/hostname` matches every node). Model layer: it knows no rule.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

/// A node as the selectors read it: its name and labels.
pub type Node = (String, BTreeMap<String, String>);

/// Whether one requirement holds for the value of its key (`None`: the node lacks the label).
/// `Gt`/`Lt` compare integers (`strconv.ParseInt`); an unparsable value matches nothing.
pub fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    let compare = |f: fn(i64, i64) -> bool| match (
        value.and_then(number),
        values.first().and_then(|x| number(x)),
    ) {
        (Some(v), Some(x)) => f(v, x),
        _ => false,
    };
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => compare(|v, x| v > x),
        "Lt" => compare(|v, x| v < x),
        _ => false,
    }
}

/// Whether a term selects the node: every expression and field requirement holds (the only
/// field is `metadata.name`); an empty term selects nothing.
pub fn term_matches(
    term: &NodeSelectorTerm,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
}

/// Whether the selector selects the node (any term does).
pub fn selects(sel: &NodeSelector, name: &str, labels: &BTreeMap<String, String>) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, name, labels))
}

/// The names of the nodes the selector selects, in the order given.
pub fn selected<'n>(sel: &NodeSelector, nodes: &'n [Node]) -> Vec<&'n str> {
    nodes
        .iter()
        .filter(|(name, labels)| selects(sel, name, labels))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// Whether the selector selects at least one of the nodes.
pub fn selects_any(sel: &NodeSelector, nodes: &[Node]) -> bool {
    nodes
        .iter()
        .any(|(name, labels)| selects(sel, name, labels))
}

/// [`selects_any`], with the set of values the nodes carry for one label at hand (`has_value`,
/// e.g. the catalog's values of the policy's node label): a term that is a single `In`
/// requirement on that label selects some node exactly when one of its values is in the set, so
/// it is answered by look-ups instead of a walk of every node. That is the affinity of a local
/// PV (`kubernetes.io/hostname In [node]`, as local-static-provisioner writes it), which a
/// StatefulSet's judgement checks for thousands of volumes. Other terms walk the nodes.
pub fn selects_any_indexed(
    sel: &NodeSelector,
    nodes: &[Node],
    label: &str,
    has_value: impl Fn(&str) -> bool,
) -> bool {
    sel.node_selector_terms.iter().any(|t| {
        let exprs = t.match_expressions.as_deref().unwrap_or_default();
        let fields = t.match_fields.as_deref().unwrap_or_default();
        match (exprs, fields) {
            ([r], []) if r.key == label && r.operator == "In" => {
                r.values.iter().flatten().any(|v| has_value(v))
            }
            _ => nodes
                .iter()
                .any(|(name, labels)| term_matches(t, name, labels)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(v: serde_json::Value) -> NodeSelector {
        serde_json::from_value(json!({ "nodeSelectorTerms": v })).unwrap()
    }

    fn nodes() -> Vec<Node> {
        let node = |name: &str, extra: &[(&str, &str)]| {
            let mut labels: BTreeMap<String, String> =
                [("kubernetes.io/hostname".to_owned(), name.to_owned())].into();
            labels.extend(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            (name.to_owned(), labels)
        };
        vec![
            node("a", &[("disk", "ssd"), ("rack", "3")]),
            node("b", &[("disk", "hdd"), ("rack", "7")]),
            node("c", &[]),
        ]
    }

    #[test]
    fn exists_on_the_hostname_selects_every_node() {
        let s = sel(
            json!([{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "Exists"}]}]),
        );
        assert_eq!(selected(&s, &nodes()), ["a", "b", "c"]);
    }

    #[test]
    fn every_operator_applies_and_terms_are_ored() {
        let n = nodes();
        let one = |op: &str, key: &str, values: &[&str]| {
            let s = sel(
                json!([{"matchExpressions": [{"key": key, "operator": op, "values": values}]}]),
            );
            selected(&s, &n).join(",")
        };
        assert_eq!(one("In", "disk", &["ssd"]), "a");
        assert_eq!(
            one("NotIn", "disk", &["ssd"]),
            "b,c",
            "a missing label is not in the set"
        );
        assert_eq!(one("DoesNotExist", "disk", &[]), "c");
        assert_eq!(one("Gt", "rack", &["3"]), "b");
        assert_eq!(one("Lt", "rack", &["7"]), "a");
        assert_eq!(one("Gt", "rack", &["x"]), "", "not a number: nothing");
        let and = sel(json!([{"matchExpressions": [
            {"key": "disk", "operator": "Exists"}, {"key": "rack", "operator": "Lt", "values": ["5"]}]}]));
        assert_eq!(selected(&and, &n), ["a"]);
        let or = sel(json!([
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}]));
        assert_eq!(selected(&or, &n), ["b", "c"]);
        assert!(
            !selects_any(&sel(json!([{}])), &n),
            "an empty term selects nothing"
        );
    }

    /// The look-up answers as the walk of every node, on the single-`In` terms it takes and on
    /// the others it hands to the walk (hostnames that differ from node names included).
    #[test]
    fn indexed_selection_answers_as_the_walk() {
        let mut n = nodes();
        n[2].1
            .insert("kubernetes.io/hostname".into(), "c-host".into());
        let values: std::collections::HashSet<String> = n
            .iter()
            .filter_map(|(_, l)| l.get("kubernetes.io/hostname").cloned())
            .collect();
        let host = "kubernetes.io/hostname";
        let cases = [
            json!([{"matchExpressions": [{"key": host, "operator": "In", "values": ["a"]}]}]),
            json!([{"matchExpressions": [{"key": host, "operator": "In", "values": ["gone", "c-host"]}]}]),
            json!([{"matchExpressions": [{"key": host, "operator": "In", "values": ["c"]}]}]),
            json!([{"matchExpressions": [{"key": host, "operator": "In", "values": ["gone"]}]}]),
            json!([{"matchExpressions": [{"key": host, "operator": "In"}]}]),
            json!([{"matchExpressions": [{"key": host, "operator": "NotIn", "values": ["a", "b", "c-host"]}]}]),
            json!([{"matchExpressions": [{"key": host, "operator": "In", "values": ["a"]},
                {"key": "disk", "operator": "In", "values": ["hdd"]}]}]),
            json!([{"matchExpressions": [{"key": host, "operator": "In", "values": ["gone"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}]),
            json!([{"matchExpressions": [{"key": host, "operator": "In", "values": ["a"]}],
                "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]),
            json!([{}]),
        ];
        let looked_up = std::cell::Cell::new(0);
        for c in cases {
            let s = sel(c.clone());
            let indexed = selects_any_indexed(&s, &n, host, |v| {
                looked_up.set(looked_up.get() + 1);
                values.contains(v)
            });
            assert_eq!(indexed, selects_any(&s, &n), "{c}");
        }
        assert!(looked_up.get() >= 4, "the single-In terms were looked up");
    }
}
