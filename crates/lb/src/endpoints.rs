//! The apiservers a cluster has, read from its `default/kubernetes` EndpointSlices.
//!
//! Every kube-apiserver keeps its own address in the endpoints of the `kubernetes` Service
//! (the lease reconciler adds it while the apiserver runs and removes it when it stops or its
//! lease expires), so the slices are the cluster's own up-to-date list of controllers: a
//! worker learns of a joined or removed controller without being told. Parsing is kept apart
//! from fetching so it can be tested on the documented format alone.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use serde_json::Value;

/// The API path of the slices of the `default/kubernetes` Service.
pub const KUBERNETES_ENDPOINT_SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes";

/// The name of the Service port the apiservers serve on.
const PORT_NAME: &str = "https";

/// The answer was not an EndpointSlice or a list of them.
#[derive(Debug, thiserror::Error)]
#[error("the apiserver's answer is not a list of EndpointSlices: {0}")]
pub struct EndpointsError(String);

// `null_as_empty` reads the `null` the API writes for an empty list as an empty list.
#[derive(Debug, Deserialize)]
struct Slice {
    #[serde(default, deserialize_with = "null_as_empty")]
    endpoints: Vec<Endpoint>,
    #[serde(default, deserialize_with = "null_as_empty")]
    ports: Vec<Port>,
}

#[derive(Debug, Deserialize)]
struct Endpoint {
    #[serde(default, deserialize_with = "null_as_empty")]
    addresses: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    conditions: Conditions,
}

#[derive(Debug, Default, Deserialize)]
struct Conditions {
    ready: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Port {
    name: Option<String>,
    port: Option<u16>,
}

/// The addresses of the ready apiservers in an EndpointSliceList (or one EndpointSlice), on
/// the slices' `https` port, sorted and without repeats.
///
/// An endpoint whose readiness is not given counts as ready, as the API documents. Slices
/// without an `https` port and addresses that are not IPs (an `FQDN` slice) are skipped. An
/// empty answer is not an error: callers should keep their previous list rather than
/// balance over nothing.
pub fn apiservers(answer: &Value) -> Result<Vec<SocketAddr>, EndpointsError> {
    let slices = slices(answer)?;
    let mut found: Vec<SocketAddr> = slices.iter().flat_map(slice_apiservers).collect();
    found.sort();
    found.dedup();
    Ok(found)
}

/// The slices of a list (`items`), or the one slice an `EndpointSlice` object is.
fn slices(answer: &Value) -> Result<Vec<Slice>, EndpointsError> {
    let invalid = |e: serde_json::Error| EndpointsError(e.to_string());
    if let Some(items) = answer.get("items") {
        return null_as_empty(items).map_err(invalid);
    }
    match answer.get("kind").and_then(Value::as_str) {
        Some("EndpointSlice") => Ok(vec![Slice::deserialize(answer).map_err(invalid)?]),
        Some(kind) => Err(EndpointsError(format!("it is a {kind}"))),
        None => Err(EndpointsError("it has neither items nor a kind".into())),
    }
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn slice_apiservers(slice: &Slice) -> Vec<SocketAddr> {
    let Some(port) = https_port(slice) else {
        return Vec::new();
    };
    slice
        .endpoints
        .iter()
        .filter(|endpoint| endpoint.conditions.ready.unwrap_or(true))
        .flat_map(|endpoint| &endpoint.addresses)
        .filter_map(|address| address.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

fn https_port(slice: &Slice) -> Option<u16> {
    slice
        .ports
        .iter()
        .find(|port| port.name.as_deref() == Some(PORT_NAME))
        .and_then(|port| port.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `GET` [`KUBERNETES_ENDPOINT_SLICES`] answers for three controllers, one of them
    /// not ready, written from the discovery.k8s.io/v1 reference.
    const THREE_CONTROLLERS: &str = r#"{
      "kind": "EndpointSliceList",
      "apiVersion": "discovery.k8s.io/v1",
      "metadata": { "resourceVersion": "5123" },
      "items": [
        {
          "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": { "kubernetes.io/service-name": "kubernetes" }
          },
          "addressType": "IPv4",
          "endpoints": [
            { "addresses": ["10.0.0.12"], "conditions": { "ready": true } },
            { "addresses": ["10.0.0.11"], "conditions": { "ready": true } },
            { "addresses": ["10.0.0.13"], "conditions": { "ready": false } }
          ],
          "ports": [ { "name": "https", "protocol": "TCP", "port": 6443 } ]
        }
      ]
    }"#;

    fn parse(text: &str) -> Result<Vec<SocketAddr>, EndpointsError> {
        apiservers(&serde_json::from_str(text).expect("sample is JSON"))
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().expect("address")).collect()
    }

    #[test]
    fn ready_endpoints_on_the_https_port() {
        assert_eq!(
            parse(THREE_CONTROLLERS).unwrap(),
            addrs(&["10.0.0.11:6443", "10.0.0.12:6443"])
        );
    }

    #[test]
    fn readiness_not_given_counts_as_ready() {
        let slice = r#"{"kind": "EndpointSlice", "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.11"]}, {"addresses": ["10.0.0.12"], "conditions": {}}],
            "ports": [{"name": "https", "port": 6443}]}"#;
        assert_eq!(
            parse(slice).unwrap(),
            addrs(&["10.0.0.11:6443", "10.0.0.12:6443"])
        );
    }

    #[test]
    fn each_slice_uses_its_own_https_port_and_other_ports_are_ignored() {
        let list = r#"{"kind": "EndpointSliceList", "items": [
            {"addressType": "IPv6",
             "endpoints": [{"addresses": ["fd00::11"], "conditions": {"ready": true}}],
             "ports": [{"name": "metrics", "port": 9000}, {"name": "https", "port": 7443}]},
            {"addressType": "IPv4",
             "endpoints": [{"addresses": ["10.0.0.11"], "conditions": {"ready": true}}],
             "ports": [{"name": "http", "port": 8080}]}
        ]}"#;
        assert_eq!(parse(list).unwrap(), addrs(&["[fd00::11]:7443"]));
    }

    #[test]
    fn names_and_repeats_are_dropped() {
        let list = r#"{"items": [
            {"addressType": "FQDN",
             "endpoints": [{"addresses": ["cp.example.test"]}],
             "ports": [{"name": "https", "port": 6443}]},
            {"addressType": "IPv4",
             "endpoints": [{"addresses": ["10.0.0.11"]}, {"addresses": ["10.0.0.11"]}],
             "ports": [{"name": "https", "port": 6443}]}
        ]}"#;
        assert_eq!(parse(list).unwrap(), addrs(&["10.0.0.11:6443"]));
    }

    #[test]
    fn an_empty_list_is_no_apiservers_and_not_an_error() {
        let list = r#"{"kind": "EndpointSliceList", "items": []}"#;
        assert_eq!(parse(list).unwrap(), []);
        let no_endpoints = r#"{"kind": "EndpointSliceList", "items": [
            {"addressType": "IPv4", "endpoints": null, "ports": null}
        ]}"#;
        assert_eq!(
            parse(no_endpoints).unwrap(),
            [],
            "the API writes empty lists as null"
        );
        assert_eq!(
            parse(r#"{"kind": "EndpointSliceList", "items": null}"#).unwrap(),
            []
        );
    }

    #[test]
    fn an_answer_of_another_shape_is_an_error() {
        let error = parse(r#"{"items": "none"}"#).unwrap_err();
        assert!(error.to_string().contains("EndpointSlices"), "{error}");
        let status = r#"{"kind": "Status", "status": "Failure", "reason": "Forbidden"}"#;
        assert!(parse(status).unwrap_err().to_string().contains("Status"));
        assert!(parse("[]").is_err());
    }
}
