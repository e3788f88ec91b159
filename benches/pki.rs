//! PKI timings (`cargo bench --bench pki`): the controller's initial PKI through the library, and
//! `k0x pki init` / `k0x user create` as processes, ECDSA P-256 against RSA 2048. Process times
//! are reported beside `k0x version`, the cost of starting the binary at all, as a baseline.
//!
//! Goals: `k0x user create` <= 30 ms, initial controller PKI <= 200 ms with ECDSA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k0x_config::schema::KeyType;
use k0x_config::{ClusterConfig, DataDir};
use k0x_pki::PkiRequest;

struct Stats(Vec<Duration>);

impl Stats {
    fn collect(runs: usize, mut f: impl FnMut() -> Duration) -> Self {
        let mut times: Vec<Duration> = (0..runs).map(|_| f()).collect();
        times.sort();
        Self(times)
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    fn median(&self) -> Duration {
        self.0[self.0.len() / 2]
    }

    fn line(&self, label: &str) -> String {
        let mean = self.0.iter().sum::<Duration>() / u32::try_from(self.0.len()).unwrap_or(1);
        format!(
            "{label:<44} n={:<3} median {:>8.2} ms  min {:>8.2} ms  mean {:>8.2} ms  max {:>8.2} ms",
            self.0.len(),
            Self::ms(self.median()),
            Self::ms(self.0[0]),
            Self::ms(mean),
            Self::ms(self.0[self.0.len() - 1]),
        )
    }
}

fn config_file(dir: &Path, key_type: KeyType) -> PathBuf {
    let name = match key_type {
        KeyType::EcdsaP256 => "ecdsa-p256",
        KeyType::Rsa2048 => "rsa-2048",
    };
    let path = dir.join(format!("{name}.yaml"));
    let yaml = format!(
        "apiVersion: k0x.io/v1beta1\nkind: ClusterConfig\nspec:\n  pki:\n    keyType: {name}\n"
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

fn run_k0x(bin: &Path, data: &Path, config: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "k0x {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn library_init(tmp: &Path, key_type: KeyType, runs: usize) -> Stats {
    let mut req = PkiRequest::from_config(&ClusterConfig::default());
    req.key_type = key_type;
    let mut n = 0;
    Stats::collect(runs, || {
        n += 1;
        let data = DataDir::new(tmp.join(format!("lib-{key_type:?}-{n}")));
        let start = Instant::now();
        k0x_pki::ensure_pki(&data, &req).unwrap();
        start.elapsed()
    })
}

#[allow(clippy::print_stdout)]
fn main() {
    let tmp = tempfile::tempdir().unwrap();
    // The shared target dir may be rebuilt under us: run a private copy of the binary.
    let bin = tmp.path().join("k0x");
    std::fs::copy(env!("CARGO_BIN_EXE_k0x"), &bin).unwrap();

    println!(
        "k0x PKI benchmark ({} CPUs)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let ecdsa = library_init(tmp.path(), KeyType::EcdsaP256, 20);
    println!("{}", ecdsa.line("initial controller PKI, library, ECDSA"));
    let rsa = library_init(tmp.path(), KeyType::Rsa2048, 5);
    println!("{}", rsa.line("initial controller PKI, library, RSA 2048"));
    // tmpfs makes fsync free: the difference to the lines above is the cost of durable writes.
    if let Ok(shm) = tempfile::tempdir_in("/dev/shm") {
        let ecdsa = library_init(shm.path(), KeyType::EcdsaP256, 20);
        println!(
            "{}",
            ecdsa.line("initial controller PKI, library, ECDSA, tmpfs")
        );
    }
    for (key_type, runs) in [(KeyType::EcdsaP256, 100), (KeyType::Rsa2048, 20)] {
        let keygen = Stats::collect(runs, || {
            let start = Instant::now();
            k0x_pki::generate_key(key_type).unwrap();
            start.elapsed()
        });
        println!(
            "{}",
            keygen.line(&format!("one key generation, {key_type:?}"))
        );
    }

    let mut req = PkiRequest::from_config(&ClusterConfig::default());
    req.key_type = KeyType::EcdsaP256;
    let data = DataDir::new(tmp.path().join("lib-recheck"));
    k0x_pki::ensure_pki(&data, &req).unwrap();
    let recheck = Stats::collect(20, || {
        let start = Instant::now();
        assert!(k0x_pki::ensure_pki(&data, &req).unwrap().unchanged());
        start.elapsed()
    });
    println!("{}", recheck.line("restart check (nothing to do), library"));

    let no_config = tmp.path().join("absent.yaml");
    let empty_data = tmp.path().join("empty");
    let baseline = Stats::collect(30, || run_k0x(&bin, &empty_data, &no_config, &["version"]));
    println!("{}", baseline.line("baseline: `k0x version` process"));

    for (key_type, init_runs, user_runs) in
        [(KeyType::EcdsaP256, 10, 30), (KeyType::Rsa2048, 3, 10)]
    {
        let config = config_file(tmp.path(), key_type);
        let mut n = 0;
        let init = Stats::collect(init_runs, || {
            n += 1;
            let data = tmp.path().join(format!("proc-{key_type:?}-{n}"));
            run_k0x(&bin, &data, &config, &["pki", "init"])
        });
        println!(
            "{}",
            init.line(&format!("`k0x pki init` process, {key_type:?}"))
        );
        let data = tmp.path().join(format!("proc-{key_type:?}-1"));
        let user = Stats::collect(user_runs, || {
            run_k0x(
                &bin,
                &data,
                &config,
                &["user", "create", "demo", "--groups", "dev"],
            )
        });
        println!(
            "{}",
            user.line(&format!("`k0x user create` process, {key_type:?}"))
        );
        println!(
            "  user create / baseline process start: {:.1}x",
            user.median().as_secs_f64() / baseline.median().as_secs_f64()
        );
    }
}
