//! Validation of a set of specs and their start order.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::spec::Spec;

/// Checks names and dependencies of `specs` (which may depend on the already running `existing`)
/// and returns the indices of `specs` in an order where every dependency comes first.
pub(crate) fn start_order(
    specs: &[Spec],
    existing: &BTreeSet<String>,
) -> Result<Vec<usize>, Error> {
    let mut index = BTreeMap::new();
    for (i, spec) in specs.iter().enumerate() {
        check_name(&spec.name)?;
        if existing.contains(&spec.name) || index.insert(spec.name.as_str(), i).is_some() {
            return Err(Error::DuplicateName(spec.name.clone()));
        }
    }
    for spec in specs {
        for dependency in &spec.depends_on {
            if !index.contains_key(dependency.as_str()) && !existing.contains(dependency) {
                return Err(Error::UnknownDependency {
                    component: spec.name.clone(),
                    dependency: dependency.clone(),
                });
            }
        }
    }
    let mut order = Vec::with_capacity(specs.len());
    let mut marks = vec![Mark::New; specs.len()];
    for i in 0..specs.len() {
        visit(i, specs, &index, &mut marks, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

#[derive(Clone, Copy, PartialEq)]
enum Mark {
    New,
    InProgress,
    Done,
}

/// Depth-first visit; `path` is the chain being visited, reported when it closes a cycle.
fn visit(
    i: usize,
    specs: &[Spec],
    index: &BTreeMap<&str, usize>,
    marks: &mut [Mark],
    path: &mut Vec<usize>,
    order: &mut Vec<usize>,
) -> Result<(), Error> {
    match marks[i] {
        Mark::Done => return Ok(()),
        Mark::InProgress => {
            let start = path.iter().position(|p| *p == i).unwrap_or(0);
            let mut cycle: Vec<_> = path[start..]
                .iter()
                .map(|p| specs[*p].name.clone())
                .collect();
            cycle.push(specs[i].name.clone());
            return Err(Error::Cycle(cycle.join(" -> ")));
        }
        Mark::New => {}
    }
    marks[i] = Mark::InProgress;
    path.push(i);
    for dependency in &specs[i].depends_on {
        if let Some(&d) = index.get(dependency.as_str()) {
            visit(d, specs, index, marks, path, order)?;
        }
    }
    path.pop();
    marks[i] = Mark::Done;
    order.push(i);
    Ok(())
}

/// Names end up in file names (`<run dir>/<name>.pid`) and log fields.
fn check_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, deps: &[&str]) -> Spec {
        let mut spec = Spec::new(name, "/bin/true");
        spec.depends_on = deps.iter().map(|d| d.to_string()).collect();
        spec
    }

    fn names(specs: &[Spec], order: &[usize]) -> Vec<String> {
        order.iter().map(|i| specs[*i].name.clone()).collect()
    }

    #[test]
    fn dependencies_come_first() {
        let specs = [
            spec("kube-scheduler", &["kube-apiserver"]),
            spec("kube-apiserver", &["etcd"]),
            spec("kubelet", &["containerd", "kube-apiserver"]),
            spec("etcd", &[]),
            spec("containerd", &[]),
        ];
        let order = names(&specs, &start_order(&specs, &BTreeSet::new()).unwrap());
        let pos = |n: &str| order.iter().position(|o| o == n).unwrap();
        assert!(pos("etcd") < pos("kube-apiserver"));
        assert!(pos("kube-apiserver") < pos("kube-scheduler"));
        assert!(pos("containerd") < pos("kubelet"));
        assert!(pos("kube-apiserver") < pos("kubelet"));
    }

    #[test]
    fn a_cycle_is_named() {
        let specs = [spec("a", &["b"]), spec("b", &["c"]), spec("c", &["a"])];
        let error = start_order(&specs, &BTreeSet::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "components depend on each other in a cycle: a -> b -> c -> a; remove one of these dependencies"
        );
    }

    #[test]
    fn unknown_dependencies_and_duplicates_are_refused() {
        let unknown = start_order(&[spec("a", &["etcd"])], &BTreeSet::new()).unwrap_err();
        assert!(
            matches!(unknown, Error::UnknownDependency { .. }),
            "{unknown}"
        );
        let twice = start_order(&[spec("a", &[]), spec("a", &[])], &BTreeSet::new()).unwrap_err();
        assert!(matches!(twice, Error::DuplicateName(_)));
        let running = BTreeSet::from(["etcd".to_string()]);
        assert!(start_order(&[spec("etcd", &[])], &running).is_err());
        assert_eq!(start_order(&[spec("a", &["etcd"])], &running).unwrap(), [0]);
    }

    #[test]
    fn names_must_be_usable_as_file_names() {
        for bad in ["", "../etc", "a/b", ".hidden", "with space"] {
            assert!(
                matches!(
                    start_order(&[spec(bad, &[])], &BTreeSet::new()),
                    Err(Error::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
    }
}
