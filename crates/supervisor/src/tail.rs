//! The last lines a component wrote, kept so that the line saying it died can say why.
//!
//! When etcd exits at start, its exit code (2) tells a user nothing; the cause ("no space left on
//! device", "wal: crc mismatch") is in its own output, which went to the log. Each process's
//! output is therefore also kept in a small ring here, and a start failure quotes the last lines
//! that look like errors. Lines are kept regardless of whether the log could keep up.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Lines kept per process.
const KEPT_LINES: usize = 20;
/// Error lines quoted in a failure message.
const QUOTED_ERRORS: usize = 3;
/// Lines quoted when none looks like an error.
const QUOTED_OTHERS: usize = 2;
/// Characters of one quoted line; the rest is cut.
const QUOTED_CHARS: usize = 240;

/// The tail of one process's stdout and stderr. Cheap to clone; clones share the lines.
#[derive(Debug, Clone)]
pub struct OutputTail(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    closed: Notify,
}

#[derive(Debug)]
struct State {
    lines: VecDeque<String>,
    /// Streams still open; the tail is complete at 0.
    open: usize,
}

impl OutputTail {
    /// A tail fed by `streams` streams, each of which calls [`OutputTail::close_stream`] at its end.
    pub fn new(streams: usize) -> Self {
        Self(Arc::new(Shared {
            state: Mutex::new(State {
                lines: VecDeque::with_capacity(KEPT_LINES),
                open: streams,
            }),
            closed: Notify::new(),
        }))
    }

    /// Keeps `line`, forgetting the oldest one beyond [`KEPT_LINES`].
    pub fn push(&self, line: &str) {
        let mut state = self.state();
        if state.lines.len() == KEPT_LINES {
            state.lines.pop_front();
        }
        state.lines.push_back(line.to_owned());
    }

    /// One stream reached its end.
    pub fn close_stream(&self) {
        let mut state = self.state();
        state.open = state.open.saturating_sub(1);
        if state.open == 0 {
            self.0.closed.notify_waiters();
        }
    }

    /// Waits until every stream ended (the process and its group are gone, the pipes drained),
    /// at most `limit`: an exited component's last words arrive just after its exit.
    pub async fn settled(&self, limit: Duration) {
        let closed = self.0.closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if self.state().open == 0 {
            return;
        }
        let _ = tokio::time::timeout(limit, closed).await;
    }

    /// `its last output: "…" | "…"`: the last lines that look like errors, else the last lines;
    /// `None` when the process wrote nothing.
    pub fn summary(&self) -> Option<String> {
        let state = self.state();
        let errors: Vec<&String> = state.lines.iter().filter(|l| looks_like_error(l)).collect();
        let quoted: Vec<&String> = if errors.is_empty() {
            let skip = state.lines.len().saturating_sub(QUOTED_OTHERS);
            state.lines.iter().skip(skip).collect()
        } else {
            errors[errors.len().saturating_sub(QUOTED_ERRORS)..].to_vec()
        };
        let quoted: Vec<String> = quoted
            .iter()
            .map(|line| format!("{:?}", brief(line)))
            .collect();
        (!quoted.is_empty()).then(|| format!("its last output: {}", quoted.join(" | ")))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Error and fatal lines of the formats components write: words (`error`, `fatal`, `panic`),
/// logrus and JSON levels, and klog's `E0102`/`F0102` prefixes.
fn looks_like_error(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    let klog = line.len() > 5
        && matches!(line.as_bytes()[0], b'E' | b'F')
        && line.as_bytes()[1..5].iter().all(u8::is_ascii_digit);
    klog || ["error", "fatal", "panic", "no space left"]
        .iter()
        .any(|word| lower.contains(word))
}

/// A line as a person reads it: a JSON log line (etcd's) becomes its message and error fields.
fn brief(line: &str) -> String {
    let text = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(fields)) => {
            let field = |key: &str| fields.get(key).and_then(|v| v.as_str()).map(str::to_owned);
            match (field("msg"), field("error")) {
                (Some(msg), Some(error)) => format!("{msg}: {error}"),
                (Some(msg), None) => msg,
                _ => line.to_owned(),
            }
        }
        _ => line.trim().to_owned(),
    };
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_the_last_error_lines() {
        let tail = OutputTail::new(0);
        tail.push("starting");
        tail.push(r#"{"level":"fatal","msg":"failed to open WAL","error":"wal: crc mismatch"}"#);
        tail.push("E0102 12:00:00.000 1 server.go:1] open /var/lib/etcd: no space left on device");
        tail.push("bye");
        assert_eq!(
            tail.summary().unwrap(),
            r#"its last output: "failed to open WAL: wal: crc mismatch" | "E0102 12:00:00.000 1 server.go:1] open /var/lib/etcd: no space left on device""#
        );
    }

    #[test]
    fn without_error_lines_the_last_lines_are_quoted() {
        let tail = OutputTail::new(0);
        assert_eq!(tail.summary(), None);
        for line in ["one", "two", "three"] {
            tail.push(line);
        }
        assert_eq!(
            tail.summary().unwrap(),
            r#"its last output: "two" | "three""#
        );
    }

    #[test]
    fn keeps_a_bounded_number_of_short_lines() {
        let tail = OutputTail::new(0);
        for i in 0..100 {
            tail.push(&format!("error {i} {}", "x".repeat(1000)));
        }
        let summary = tail.summary().unwrap();
        assert!(
            summary.contains("error 97") && !summary.contains("error 96"),
            "{summary}"
        );
        assert!(summary.len() < 4 * QUOTED_CHARS, "{summary}");
    }

    #[tokio::test(start_paused = true)]
    async fn settles_when_every_stream_closed_or_after_the_limit() {
        let tail = OutputTail::new(2);
        let waiting = tokio::spawn({
            let tail = tail.clone();
            async move { tail.settled(Duration::from_secs(60)).await }
        });
        tail.close_stream();
        tail.close_stream();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("settled when both streams closed")
            .unwrap();
        let open = OutputTail::new(1);
        let began = tokio::time::Instant::now();
        open.settled(Duration::from_millis(500)).await;
        assert_eq!(began.elapsed(), Duration::from_millis(500));
    }
}
