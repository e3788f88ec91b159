//! sysinfo's port check against a real listener. Kept alone in its own test binary: a process
//! spawned by a concurrent test in the same binary inherits the listening socket until it execs,
//! which would keep the port busy for a moment after the listener is dropped.

use std::fs;
use std::net::TcpListener;

use k0x_config::DataDir;
use k0x_host::sysinfo::{Options, Parts, RealHost, Status, run_checks};

fn port_status(options: &Options, id: &str) -> Status {
    let report = run_checks(&RealHost, options);
    report.checks.iter().find(|c| c.id == id).unwrap().status
}

#[test]
fn a_bound_port_is_reported_busy() {
    // A port below the ephemeral range: once the listener is gone, no outgoing connection of
    // another process can pick it up as its local port before the second check.
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let ephemeral_start: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    let first = 20_000 + (std::process::id() % 5_000) as u16;
    let (listener, port) = (first..ephemeral_start)
        .find_map(|port| {
            TcpListener::bind(("127.0.0.1", port))
                .ok()
                .map(|l| (l, port))
        })
        .expect("a free port below the ephemeral range");
    let data = tempfile::tempdir().unwrap();
    let mut options = Options::new(
        DataDir::new(data.path()),
        Parts::Controller,
        &k0x_config::ClusterConfig::default().spec,
    );
    options.ports = vec![(port, "test listener")];
    let id = format!("port:{port}");
    assert_eq!(port_status(&options, &id), Status::Fail);
    drop(listener);
    assert_eq!(port_status(&options, &id), Status::Pass);
}
