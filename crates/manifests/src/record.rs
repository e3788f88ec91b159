//! A stack's record in the cluster: the ConfigMap `k0x-stack-<stack>` in kube-system, one data key
//! per controller that applied the stack, listing the kinds it applied for it.
//!
//! Labels say which objects belong to a stack, but a label can only be searched kind by kind;
//! the record says which kinds to search. Each controller writes only its own key (server-side
//! apply under a field manager of its own), so controllers never overwrite each other's entries,
//! and a controller deletes a whole stack only when its own key shows it applied that stack.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::api::{ApiClient, ApiError, label_selector, segment};
use crate::plan::KindRef;

/// The namespace of the records.
pub const RECORD_NAMESPACE: &str = "kube-system";
/// The label of a record; its value is the stack's name. Records do not carry the stack label, so
/// a prune never deletes its own record.
pub const RECORD_LABEL: &str = "k0x.io/stack-record";

/// What the cluster holds about one stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub stack: String,
    /// Per controller (node name), the kinds it applied.
    pub kinds: BTreeMap<String, BTreeSet<KindRef>>,
    /// Guards the delete of the last entry against a controller adding its own meanwhile.
    resource_version: Option<String>,
}

impl Record {
    /// Every kind any controller applied for the stack: what a prune lists.
    pub fn all_kinds(&self) -> BTreeSet<KindRef> {
        self.kinds.values().flatten().cloned().collect()
    }

    /// The kinds `controller` applied, empty when it never applied the stack.
    pub fn kinds_of(&self, controller: &str) -> BTreeSet<KindRef> {
        self.kinds.get(controller).cloned().unwrap_or_default()
    }

    fn from_config_map(config_map: &Value) -> Self {
        let data = config_map["data"].as_object();
        let kinds = data
            .into_iter()
            .flatten()
            .map(|(controller, lines)| {
                let kinds = lines
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .filter_map(KindRef::parse)
                    .collect();
                (controller.clone(), kinds)
            })
            .collect();
        Self {
            stack: config_map["metadata"]["labels"][RECORD_LABEL]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            kinds,
            resource_version: config_map["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_owned),
        }
    }
}

fn record_name(stack: &str) -> String {
    format!("k0x-stack-{stack}")
}

fn record_path(stack: &str) -> String {
    format!(
        "/api/v1/namespaces/{RECORD_NAMESPACE}/configmaps/{}",
        segment(&record_name(stack))
    )
}

/// The field manager of `controller`'s entries.
fn manager(controller: &str) -> String {
    format!("k0x-record-{controller}")
}

/// The apply configuration of `controller`'s entry: its kinds, or no entry at all when `kinds` is
/// empty (server-side apply then removes the key it owned).
fn entry_body(stack: &str, controller: &str, kinds: &BTreeSet<KindRef>) -> Value {
    let mut body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": record_name(stack),
            "namespace": RECORD_NAMESPACE,
            "labels": { RECORD_LABEL: stack },
        },
    });
    if !kinds.is_empty() {
        let lines: String = kinds.iter().map(|kind| format!("{kind}\n")).collect();
        body["data"] = json!({ controller: lines });
    }
    body
}

/// The record of `stack`; an empty one when the stack was never applied.
pub async fn read(api: &ApiClient, stack: &str) -> Result<Record, ApiError> {
    match api.get(&record_path(stack)).await {
        Ok(config_map) => Ok(Record::from_config_map(&config_map)),
        Err(err) if err.is_not_found() => Ok(Record {
            stack: stack.to_owned(),
            ..Record::default()
        }),
        Err(err) => Err(err),
    }
}

/// Every stack record in the cluster.
pub async fn list(api: &ApiClient) -> Result<Vec<Record>, ApiError> {
    let path = format!(
        "/api/v1/namespaces/{RECORD_NAMESPACE}/configmaps{}",
        label_selector(RECORD_LABEL, None)
    );
    let list = api.get(&path).await?;
    let items = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    Ok(items.iter().map(Record::from_config_map).collect())
}

/// Sets `controller`'s entry of the stack's record to `kinds`.
pub async fn write(
    api: &ApiClient,
    stack: &str,
    controller: &str,
    kinds: &BTreeSet<KindRef>,
) -> Result<(), ApiError> {
    let body = entry_body(stack, controller, kinds);
    api.apply(&record_path(stack), &manager(controller), &body)
        .await
        .map(drop)
}

/// Removes `controller`'s entry, and the whole record when no other controller has one.
pub async fn remove(api: &ApiClient, record: &Record, controller: &str) -> Result<(), ApiError> {
    write(api, &record.stack, controller, &BTreeSet::new()).await?;
    if record.kinds.keys().any(|other| other != controller) {
        return Ok(());
    }
    let options = json!({
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": { "resourceVersion": read(api, &record.stack).await?.resource_version },
    });
    match api.delete(&record_path(&record.stack), &options).await {
        // Another controller wrote its entry meanwhile: the record stays, for it.
        Err(ApiError::Refused { status, .. }) if status == hyper::StatusCode::CONFLICT => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(list: &[&str]) -> BTreeSet<KindRef> {
        list.iter().filter_map(|k| KindRef::parse(k)).collect()
    }

    #[test]
    fn entries_are_read_per_controller() {
        let config_map = json!({
            "metadata": {"labels": {RECORD_LABEL: "apps"}, "resourceVersion": "7"},
            "data": {
                "node-a": "v1 ConfigMap\napps/v1 Deployment\n",
                "node-b": "v1 Namespace\nv1 ConfigMap\n",
            },
        });
        let record = Record::from_config_map(&config_map);
        assert_eq!(record.stack, "apps");
        assert_eq!(
            record.kinds_of("node-a"),
            kinds(&["v1 ConfigMap", "apps/v1 Deployment"])
        );
        assert!(record.kinds_of("node-c").is_empty());
        assert_eq!(
            record.all_kinds(),
            kinds(&["v1 ConfigMap", "apps/v1 Deployment", "v1 Namespace"])
        );
    }

    #[test]
    fn an_entry_body_holds_only_its_own_key() {
        let body = entry_body("apps", "node-a", &kinds(&["v1 ConfigMap"]));
        assert_eq!(body["metadata"]["name"], "k0x-stack-apps");
        assert_eq!(body["data"], json!({"node-a": "v1 ConfigMap\n"}));
        assert!(body["metadata"]["labels"].get("k0x.io/stack").is_none());
        let removal = entry_body("apps", "node-a", &BTreeSet::new());
        assert!(removal.get("data").is_none());
    }
}
