//! Records the build year so the clock check can tell a host whose clock was never set.

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    // SOURCE_DATE_EPOCH keeps reproducible builds reproducible.
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=K0X_BUILD_UNIX_TIME={seconds}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
