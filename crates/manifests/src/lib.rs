//! The manifests applier: each stack in `<data-dir>/manifests/<stack>/` is applied to the cluster
//! by the controller, applied again when its files change, and pruned of what they no longer
//! hold. k0x's own system stacks (CoreDNS, metrics-server) live there too, so a user's stack and
//! k0x's are applied the same way (k0s's convention).
//!
//! Why it is built this way:
//! - Server-side apply (`PATCH ...?fieldManager=k0x&force=true`, a JSON body as
//!   `application/apply-patch+yaml`) makes each apply idempotent and leaves the merge to the
//!   apiserver: no client-side diff, no last-applied annotation. `force` because the files are the
//!   truth: an edit made with kubectl to a field the files set is taken back on the next change.
//! - What a stack owns is kept in the cluster, not on one controller's disk, so several
//!   controllers (and a controller that lost its disk) agree on it: every object carries the label
//!   `k0x.io/stack=<stack>`, and the record ConfigMap `k0x-stack-<stack>` in kube-system lists
//!   the kinds each controller applied for the stack, since a label can only be searched kind by
//!   kind. A prune lists those kinds by label and deletes what the files do not hold. A stack
//!   whose directory is gone is deleted by a controller whose own record entry shows it applied
//!   that stack, so a new controller joining with an empty directory removes nothing.
//! - A stack whose files do not all parse is left exactly as it is (one warning line with file,
//!   line and column): applying the readable rest and pruning would delete what the broken file
//!   holds.
//! - Changes are noticed by polling a hash of the files' names and contents: no inotify
//!   dependency, and a rename-on-save or a directory replaced whole looks like any other change.
//!   A failed round is retried with a doubling delay; an unchanged stack is not applied again.
//! - Namespaces and CustomResourceDefinitions are applied first and pruned last; a kind the
//!   apiserver does not serve yet (a custom resource whose definition the same stack applies) is
//!   looked up again on the retry, and no prune runs while a kind is unknown.

mod api;
mod applier;
mod discovery;
mod parse;
mod plan;
mod record;
mod scan;

pub use api::{ApiClient, ApiError, segment};
pub use applier::{Applier, FIELD_MANAGER, POLL_INTERVAL};
pub use plan::STACK_LABEL;
pub use record::{RECORD_LABEL, RECORD_NAMESPACE};
