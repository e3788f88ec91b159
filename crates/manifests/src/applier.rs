//! The loop: every few seconds, read the manifests directory; apply and prune each stack whose
//! files changed (or whose last round failed, after a backoff); delete the stacks this controller
//! applied and whose directories are gone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use k0x_config::DataDir;
use serde_json::json;
use tokio::time::Instant;

use crate::api::{ApiClient, ApiError, label_selector};
use crate::discovery::Discovery;
use crate::parse::{BadFile, parse_stack};
use crate::plan::{self, KindRef, ObjectKey, STACK_LABEL, Target};
use crate::record::{self, Record};
use crate::scan::{StackFiles, scan};

/// How often the directory is read.
pub const POLL_INTERVAL: Duration = Duration::from_secs(3);
/// The field manager of applied objects.
pub const FIELD_MANAGER: &str = "k0x";
/// Retries of a failed round wait 1 s, doubling up to this.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// Applies `<data-dir>/manifests/<stack>/` to the cluster; see the crate docs.
#[derive(Debug)]
pub struct Applier {
    api: ApiClient,
    root: PathBuf,
    controller: String,
    discovery: Discovery,
    stacks: BTreeMap<String, Seen>,
    removals: Seen,
    scan_error: Option<String>,
}

/// What the last round did with a stack (or with the removed stacks, keyed by the set of stack
/// names then present).
#[derive(Debug, Clone, Default)]
struct Seen {
    hash: Option<u64>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Seen {
    /// A round is due when the input changed, or it failed and the backoff has passed.
    fn due(&self, hash: u64, now: Instant) -> bool {
        self.hash != Some(hash) || self.retry_at.is_some_and(|at| now >= at)
    }

    /// Records a round's outcome; a failure returns the delay before the retry.
    fn settle(&mut self, hash: u64, ok: bool, now: Instant) -> Option<Duration> {
        self.hash = Some(hash);
        if ok {
            self.failures = 0;
            self.retry_at = None;
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        let delay = retry_delay(self.failures);
        self.retry_at = Some(now + delay);
        Some(delay)
    }
}

/// 1 s, 2 s, 4 s ... up to [`MAX_RETRY_DELAY`].
fn retry_delay(failures: u32) -> Duration {
    let doubling = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    Duration::from_secs(1)
        .saturating_mul(doubling)
        .min(MAX_RETRY_DELAY)
}

/// What one stack's round did.
#[derive(Debug, Default)]
struct Tally {
    applied: usize,
    pruned: usize,
    errors: Vec<String>,
}

impl Tally {
    fn fail(&mut self, what: impl std::fmt::Display, err: &ApiError) {
        self.errors.push(format!("{what}: {err}"));
    }
}

impl Applier {
    /// An applier of `data`'s manifests to the apiserver at `server`, as the admin; `controller`
    /// (the node name) tells its record entries from other controllers'.
    pub fn new(data: &DataDir, server: &str, controller: &str) -> Result<Self, ApiError> {
        Ok(Self {
            api: ApiClient::as_admin(data, server)?,
            root: data.manifests(),
            controller: controller.to_owned(),
            discovery: Discovery::default(),
            stacks: BTreeMap::new(),
            removals: Seen::default(),
            scan_error: None,
        })
    }

    /// Runs rounds every [`POLL_INTERVAL`] until `stop` completes.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = self.round() => {}
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }

    async fn round(&mut self) {
        let stacks = match scan(&self.root) {
            Ok(stacks) => stacks,
            Err(err) => return self.scan_failed(&err),
        };
        self.scan_error = None;
        self.stacks.retain(|name, _| stacks.contains_key(name));
        for stack in stacks.values() {
            let seen = self.stacks.entry(stack.name.clone()).or_default();
            if !seen.due(stack.hash, Instant::now()) {
                continue;
            }
            let tally = self.reconcile(stack).await;
            let ok = tally.as_ref().is_none_or(|t| t.errors.is_empty());
            let seen = self.stacks.entry(stack.name.clone()).or_default();
            let retry = seen.settle(stack.hash, ok, Instant::now());
            if let Some(tally) = tally {
                log_tally(&stack.name, &tally, retry);
            }
        }
        let present: BTreeSet<&str> = stacks.keys().map(String::as_str).collect();
        let names_hash = names_hash(&present);
        if self.removals.due(names_hash, Instant::now()) {
            let ok = self.remove_stacks(&present).await;
            self.removals.settle(names_hash, ok, Instant::now());
        }
    }

    /// An unreadable manifests directory stops the round: reading it as empty would prune every
    /// stack. Said once per different error.
    fn scan_failed(&mut self, err: &std::io::Error) {
        let message = err.to_string();
        if self.scan_error.as_ref() != Some(&message) {
            tracing::warn!(
                "manifests not applied: cannot read {}: {message}; make it a directory root can \
                 read (nothing is pruned meanwhile)",
                self.root.display()
            );
            self.scan_error = Some(message);
        }
    }

    /// Applies one stack and prunes what its files no longer hold. A stack that does not parse is
    /// not touched (`None`), and not retried until its files change.
    async fn reconcile(&mut self, stack: &StackFiles) -> Option<Tally> {
        let manifests = match parse_stack(stack) {
            Ok(manifests) => manifests,
            Err(bad) => {
                warn_bad_file(&stack.name, &bad);
                return None;
            }
        };
        let mut tally = Tally::default();
        let mut targets = Vec::new();
        let mut unresolved = false;
        for manifest in &manifests {
            let kind = KindRef::of(&manifest.object);
            match self.discovery.resolve(&self.api, &kind).await {
                Ok(resource) => {
                    targets.push(plan::target(&manifest.object, &resource, &stack.name))
                }
                Err(err) => {
                    unresolved = true;
                    let file = manifest.file.display();
                    tally.fail(format_args!("{file} document {}", manifest.document), &err);
                }
            }
        }
        plan::apply_order(&mut targets);
        self.apply_and_prune(&stack.name, &targets, unresolved, &mut tally)
            .await;
        Some(tally)
    }

    /// The record is widened before the applies (a crash between them must not lose a kind) and
    /// narrowed to the kinds in the files after a complete prune. No prune runs while a kind is
    /// unknown: where its objects go (a namespace or none) is not known either.
    async fn apply_and_prune(
        &mut self,
        stack: &str,
        targets: &[Target],
        unresolved: bool,
        tally: &mut Tally,
    ) {
        let kinds: BTreeSet<KindRef> = targets.iter().map(|t| t.kind.clone()).collect();
        let record = match record::read(&self.api, stack).await {
            Ok(record) => record,
            Err(err) => return tally.fail("reading the stack record", &err),
        };
        let mine = record.kinds_of(&self.controller);
        let widened: BTreeSet<KindRef> = mine.union(&kinds).cloned().collect();
        if widened != mine
            && let Err(err) = record::write(&self.api, stack, &self.controller, &widened).await
        {
            return tally.fail("writing the stack record", &err);
        }
        for target in targets {
            match self
                .api
                .apply(&target.path, FIELD_MANAGER, &target.body)
                .await
            {
                Ok(_) => tally.applied += 1,
                Err(err) => {
                    if err.is_not_found() {
                        self.discovery.forget(&target.kind.api_version);
                    }
                    tally.fail(&target.key, &err);
                }
            }
        }
        if unresolved {
            return;
        }
        let desired = targets.iter().map(|t| t.key.clone()).collect();
        let listed: BTreeSet<KindRef> = record.all_kinds().union(&kinds).cloned().collect();
        let before = tally.errors.len();
        self.prune(stack, &listed, &desired, tally).await;
        if tally.errors.len() == before
            && widened != kinds
            && let Err(err) = record::write(&self.api, stack, &self.controller, &kinds).await
        {
            tally.fail("writing the stack record", &err);
        }
    }

    /// Deletes the objects of `kinds` labelled with `stack` that are not `desired`.
    async fn prune(
        &mut self,
        stack: &str,
        kinds: &BTreeSet<KindRef>,
        desired: &BTreeSet<ObjectKey>,
        tally: &mut Tally,
    ) {
        // By key: a kind recorded under two API versions that both serve it is listed twice.
        let mut paths = BTreeMap::new();
        for kind in kinds {
            match self.labelled(kind, stack).await {
                Ok(objects) => paths.extend(objects),
                Err(ApiError::UnknownKind { .. }) => {}
                Err(err) => tally.fail(format_args!("listing {kind}"), &err),
            }
        }
        let options = json!({"apiVersion": "v1", "kind": "DeleteOptions",
            "propagationPolicy": "Background"});
        let live = paths.keys().cloned().collect();
        for key in plan::prune_set(live, desired) {
            match self.api.delete(&paths[&key], &options).await {
                Ok(()) => tally.pruned += 1,
                Err(err) => tally.fail(format_args!("deleting {key}"), &err),
            }
        }
    }

    /// The objects of `kind` carrying the stack label `stack`, with their paths; objects already
    /// being deleted are left to finish.
    async fn labelled(
        &mut self,
        kind: &KindRef,
        stack: &str,
    ) -> Result<Vec<(ObjectKey, String)>, ApiError> {
        let resource = self.discovery.resolve(&self.api, kind).await?;
        let path = resource.collection_path(None) + &label_selector(STACK_LABEL, Some(stack));
        let list = self.api.get(&path).await?;
        let items = list["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let live = items
            .iter()
            .filter(|item| item["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|item| {
                let name = item["metadata"]["name"].as_str()?.to_owned();
                let namespace = item["metadata"]["namespace"].as_str().map(str::to_owned);
                let path = resource.object_path(namespace.as_deref(), &name);
                let key = ObjectKey {
                    group: kind.group().to_owned(),
                    kind: kind.kind.clone(),
                    namespace,
                    name,
                };
                Some((key, path))
            })
            .collect();
        Ok(live)
    }

    /// Deletes every stack whose directory is gone and which this controller applied (its record
    /// entry says so): a new controller with an empty directory removes nothing.
    async fn remove_stacks(&mut self, present: &BTreeSet<&str>) -> bool {
        let records = match record::list(&self.api).await {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!("manifests: cannot list the stack records: {err}");
                return false;
            }
        };
        let mut ok = true;
        for record in records {
            let removed = !present.contains(record.stack.as_str());
            if removed && record.kinds.contains_key(&self.controller) {
                ok &= self.remove_stack(&record).await;
            }
        }
        ok
    }

    /// Prunes every object of a removed stack, then its record entry; said in one line.
    async fn remove_stack(&mut self, record: &Record) -> bool {
        let mut tally = Tally::default();
        self.prune(
            &record.stack,
            &record.all_kinds(),
            &BTreeSet::new(),
            &mut tally,
        )
        .await;
        if tally.errors.is_empty()
            && let Err(err) = record::remove(&self.api, record, &self.controller).await
        {
            tally.fail("removing the stack record", &err);
        }
        if tally.errors.is_empty() {
            tracing::info!(
                stack = %record.stack,
                pruned = tally.pruned,
                "manifests stack {} removed: its directory is gone, {} objects deleted",
                record.stack,
                tally.pruned
            );
        } else {
            log_tally(&record.stack, &tally, None);
        }
        tally.errors.is_empty()
    }
}

fn names_hash(names: &BTreeSet<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    names.hash(&mut hasher);
    hasher.finish()
}

fn warn_bad_file(stack: &str, bad: &BadFile) {
    tracing::warn!(
        stack,
        "manifests stack {stack} not applied: {bad}; nothing in the stack is changed or pruned \
         until the file is fixed"
    );
}

/// One line per stack round: counts, and the first error when some failed.
fn log_tally(stack: &str, tally: &Tally, retry: Option<Duration>) {
    let retry = retry.map_or_else(
        || "retrying".to_owned(),
        |delay| format!("retrying in {delay:?}"),
    );
    match tally.errors.first() {
        None => tracing::info!(
            stack,
            applied = tally.applied,
            pruned = tally.pruned,
            "manifests stack {stack} applied: {} objects applied, {} pruned",
            tally.applied,
            tally.pruned
        ),
        Some(first) => tracing::warn!(
            stack,
            applied = tally.applied,
            pruned = tally.pruned,
            failed = tally.errors.len(),
            "manifests stack {stack} partly applied: {} objects applied, {} pruned, {} failed \
             (first: {first}); {retry}",
            tally.applied,
            tally.pruned,
            tally.errors.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::ManifestFile;

    fn applier() -> Applier {
        Applier {
            api: ApiClient::unreachable(),
            root: PathBuf::from("manifests"),
            controller: "node-a".to_owned(),
            discovery: Discovery::default(),
            stacks: BTreeMap::new(),
            removals: Seen::default(),
            scan_error: None,
        }
    }

    fn stack(text: &str) -> StackFiles {
        StackFiles {
            name: "apps".to_owned(),
            dir: PathBuf::from("manifests/apps"),
            files: Ok(vec![ManifestFile {
                path: PathBuf::from("manifests/apps/a.yaml"),
                text: Ok(text.to_owned()),
            }]),
            hash: 1,
        }
    }

    #[tokio::test]
    async fn a_stack_that_does_not_parse_makes_no_call_at_all() {
        let mut applier = applier();
        let bad = applier.reconcile(&stack("kind: [unclosed\n")).await;
        assert!(bad.is_none(), "no apply, no prune, no retry: {bad:?}");
        let good = applier
            .reconcile(&stack(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
            ))
            .await
            .unwrap();
        assert!(
            good.errors[0].contains("unreachable"),
            "a stack that parses talks to the apiserver: {good:?}"
        );
        assert_eq!((good.applied, good.pruned), (0, 0));
    }

    #[test]
    fn a_failed_round_is_retried_after_a_growing_delay() {
        let now = Instant::now();
        let mut seen = Seen::default();
        assert!(seen.due(1, now));
        assert_eq!(seen.settle(1, false, now), Some(Duration::from_secs(1)));
        assert!(!seen.due(1, now));
        assert!(seen.due(1, now + Duration::from_secs(1)));
        assert_eq!(seen.settle(1, false, now), Some(Duration::from_secs(2)));
        assert!(seen.due(2, now), "a change is applied at once");
        assert_eq!(seen.settle(2, true, now), None);
        assert!(!seen.due(2, now + MAX_RETRY_DELAY));
    }

    #[test]
    fn retry_delays_are_capped() {
        let delays: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }
}
