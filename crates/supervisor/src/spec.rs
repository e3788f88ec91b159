//! What to run and how to tell that it works: the contract between the node crate, which builds
//! specs from configuration, and the supervisor, which runs them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One supervised component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Component name, used in logs, pid files and status (`etcd`, `kube-apiserver`, ...).
    pub name: String,
    /// Executable to run.
    pub path: PathBuf,
    pub args: Vec<String>,
    /// Extra environment on top of k0x's own (NOTIFY_SOCKET is always removed and the marker
    /// `K0X_MANAGED` always set by the supervisor, whatever this says).
    pub env: BTreeMap<String, String>,
    /// Working directory; `None` keeps k0x's.
    pub dir: Option<PathBuf>,
    pub readiness: Readiness,
    pub restart: RestartPolicy,
    /// Time between SIGTERM and SIGKILL of the process group.
    pub stop_timeout: Duration,
    /// Components that must be ready before this one starts.
    pub depends_on: Vec<String>,
}

impl Spec {
    /// A spec with no probe, `restart: always`, a 10 s stop timeout and no dependencies.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            dir: None,
            readiness: Readiness::default(),
            restart: RestartPolicy::Always,
            stop_timeout: Duration::from_secs(10),
            depends_on: Vec::new(),
        }
    }
}

/// When to restart a component that exited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// A readiness probe with its timing, and how the same probe watches the component once it was
/// ready.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Readiness {
    pub probe: Probe,
    pub timing: ProbeTiming,
    pub health: HealthPolicy,
}

/// How to check that a component is ready.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Probe {
    /// Ready as soon as the process runs.
    #[default]
    None,
    /// A TCP connect succeeds.
    Tcp(SocketAddr),
    /// An HTTP(S) GET returns 2xx. For `https` URLs, `ca` verifies the server and
    /// `client_cert`/`client_key` authenticate k0x.
    Http {
        url: String,
        ca: Option<PathBuf>,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
    },
    /// A unix socket accepts a connection.
    UnixSocket(PathBuf),
    /// A command exits 0.
    Exec { path: PathBuf, args: Vec<String> },
}

/// Probe cadence; `timeout` bounds the whole wait for readiness (config raises it for slow boards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTiming {
    pub interval: Duration,
    pub attempt_timeout: Duration,
    pub timeout: Duration,
}

/// What happens after the first ready: the probe keeps running, a component whose probe fails is
/// shown degraded, and one that stays unhealthy for `restart_after` is restarted.
///
/// The defaults are generous on purpose. A restart makes a slow machine slower, and a probe that
/// is too tight restarts a component that is merely busy: a kubeadm apiserver liveness probe of
/// 15 s plus 8 failures of 15 s killed the apiservers of Banana Pi boards under load, over and
/// over. So k0x probes every 10 s, allows 10 s per attempt, and restarts only after 5 minutes of
/// failures without a single success; `spec.probes.restartUnhealthyAfterSeconds` raises that or
/// (0) turns restarts off, leaving only the degraded state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Time between two probes once the component was ready.
    pub interval: Duration,
    pub attempt_timeout: Duration,
    /// Restart after failing every probe for this long; `None`: never restart, only report.
    pub restart_after: Option<Duration>,
}

impl HealthPolicy {
    /// The time a component may stay unhealthy before it is restarted.
    pub const DEFAULT_RESTART_AFTER: Duration = Duration::from_secs(300);
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(10),
            restart_after: Some(Self::DEFAULT_RESTART_AFTER),
        }
    }
}

impl Default for ProbeTiming {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            attempt_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(120),
        }
    }
}
