//! The components k0x carries: the compiled-in lock, the payload appended to the binary, its
//! verified extraction into `<data-dir>/bin`, and the version report.
//!
//! ```text
//! embedded-bins/components.lock --(include_str!)--> lock::expected()
//! embedded-bins/stage  --> payload.tar.zst (manifest.json first, then the binaries)
//! k0x-payload attach   --> k0x binary + payload + 96-byte trailer
//! Payload::locate()    --> K0X_PAYLOAD or the trailer of /proc/self/exe
//! extract()            --> bin/ (streamed, verified, atomic per file, flock'd)
//! components_report()  --> `k0x version --components`
//! ```

pub mod buildinfo;
mod error;
mod extract;
pub mod lock;
mod manifest;
mod payload;
mod report;

pub use error::{AssetsError, NO_PAYLOAD_HINT, Result};
pub use extract::{BINARY_MODE, ExtractReport, Progress, binary_path, extract};
pub use manifest::{BinManifest, BinRecord, PayloadFile, PayloadManifest};
pub use payload::{
    AttachReport, Origin, PAYLOAD_ENV, Payload, TRAILER_LEN, attach, own_executable,
};
pub use report::{ComponentInfo, ComponentStatus, MISSING_HINT, components_report};
