//! A worker's way to the apiservers: the node-local load balancer (k0x-lb) on
//! `127.0.0.1:7443`, which the kubelet, kube-proxy and flannel name as their server.
//!
//! It starts with the apiservers the join named and then follows the cluster: every few seconds
//! it reads the `default/kubernetes` EndpointSlices (every apiserver registers its address
//! there) through itself, with kube-proxy's credentials (`system:node-proxier` may list
//! EndpointSlices). So a controller added later is used and a removed one dropped, and a dead one
//! is skipped at the next connection. Controllers run their own apiserver and use it directly.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use k0x_config::{DataDir, pki_names};
use k0x_join::material::WorkerFiles;
use k0x_lb::{Balancer, BalancerHandle};
use k0x_manifests::ApiClient;

/// Where the balancer listens (k0s's node-local load-balancing port).
pub const PORT: u16 = k0x_config::ports::NODE_LOCAL_BALANCER;

/// The server URL the worker's components use.
pub fn server_url() -> String {
    format!("https://{}:{PORT}", Ipv4Addr::LOCALHOST)
}

/// How often the controller list is read from the cluster.
const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Starts the balancer over the apiservers the join named, and the task that follows the
/// cluster's list; both end with `stopped`.
pub async fn start(
    data: &DataDir,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = WorkerFiles::in_data_dir(data).read_settings()?;
    let initial = settings
        .api_servers
        .iter()
        .map(|url| socket_addr(url))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, PORT));
    let balancer = Balancer::new(listen, initial).await?;
    let handle = balancer.handle();
    let kubeconfig = data.kubeconfig(pki_names::KUBE_PROXY);
    let client = ApiClient::from_kubeconfig(&kubeconfig, &server_url())?;
    tracing::info!("API load balancer on {listen} over {:?}", handle.backends());
    tokio::spawn(async move {
        tokio::select! {
            () = balancer.run() => {}
            () = follow_cluster(client, handle) => {}
            () = stopped => {}
        }
    });
    Ok(())
}

/// Replaces the balancer's backends with the apiservers the cluster lists, whenever they differ.
async fn follow_cluster(client: ApiClient, handle: BalancerHandle) {
    let mut last_error = String::new();
    loop {
        tokio::time::sleep(REFRESH_INTERVAL).await;
        let listed = client
            .get(k0x_lb::KUBERNETES_ENDPOINT_SLICES)
            .await
            .map_err(|e| e.to_string())
            .and_then(|answer| k0x_lb::apiservers(&answer).map_err(|e| e.to_string()));
        match listed {
            Ok(found) if !found.is_empty() && found != handle.backends() => {
                tracing::info!("API load balancer: apiservers now {found:?}");
                handle.set_backends(found);
            }
            Ok(_) => {}
            Err(err) if err != last_error => {
                tracing::warn!("API load balancer cannot read the apiserver list: {err}");
                last_error = err;
            }
            Err(_) => {}
        }
    }
}

/// `https://203.0.113.1:6443` as a socket address.
fn socket_addr(url: &str) -> anyhow::Result<SocketAddr> {
    url.strip_prefix("https://")
        .map(|rest| rest.trim_end_matches('/'))
        .and_then(|host_port| host_port.parse().ok())
        .with_context(|| {
            format!("the join named the API server {url:?}, not https://IP:PORT; join again")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_urls_become_addresses() {
        assert_eq!(
            socket_addr("https://203.0.113.1:6443").unwrap(),
            "203.0.113.1:6443".parse().unwrap()
        );
        assert_eq!(
            socket_addr("https://[fd00::1]:6443/").unwrap(),
            "[fd00::1]:6443".parse().unwrap()
        );
        let err = socket_addr("http://ctl:6443").unwrap_err().to_string();
        assert!(err.contains("not https://IP:PORT"), "{err}");
    }
}
