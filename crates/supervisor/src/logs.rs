//! Forwarding of children's stdout/stderr into tracing.
//!
//! A child must never stall because k0x's own log output is slow (a full journal, a paused
//! terminal). So each pipe is drained by an async reader that never waits for the log sink: lines
//! go into a bounded queue with `try_send`, and when the queue is full they are dropped and
//! counted. A single log thread empties the queue into tracing and reports how many lines were
//! dropped before the next one it writes.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::tail::OutputTail;

/// Lines longer than this are split, which bounds the memory a child can make k0x hold.
const MAX_LINE: usize = 16 * 1024;
/// Lines queued for the log thread before further lines are dropped.
pub(crate) const QUEUE_LINES: usize = 1024;

/// One line of child output.
#[derive(Debug)]
pub(crate) struct LogLine {
    component: Arc<str>,
    stream: &'static str,
    text: String,
    /// Lines of this stream dropped just before this one.
    dropped_before: u64,
}

/// The sending side of the log queue; cheap to clone into each reader.
#[derive(Debug, Clone)]
pub(crate) struct LogSink(SyncSender<LogLine>);

impl LogSink {
    /// A sink of `capacity` lines and the receiving end for the log thread.
    pub(crate) fn new(capacity: usize) -> (Self, Receiver<LogLine>) {
        let (tx, rx) = sync_channel(capacity);
        (Self(tx), rx)
    }

    /// Starts the thread that writes queued lines to tracing; it ends when every sink is gone.
    pub(crate) fn start_thread(capacity: usize) -> std::io::Result<Self> {
        let (sink, rx) = Self::new(capacity);
        std::thread::Builder::new()
            .name("k0x-child-logs".into())
            .spawn(move || write_lines(&rx))?;
        Ok(sink)
    }
}

fn write_lines(rx: &Receiver<LogLine>) {
    for line in rx {
        if line.dropped_before > 0 {
            tracing::warn!(
                component = %line.component,
                stream = line.stream,
                "dropped {} lines of output: logging could not keep up",
                line.dropped_before
            );
        }
        tracing::info!(component = %line.component, stream = line.stream, "{}", line.text);
    }
}

/// Reads `pipe` to its end, line by line, into `sink` and `tail`. Returns how many lines were
/// dropped without being reported (they were the last ones); those are also logged here.
pub(crate) async fn forward(
    mut pipe: pipe::Receiver,
    component: Arc<str>,
    stream: &'static str,
    sink: LogSink,
    tail: OutputTail,
) -> u64 {
    let mut forwarder = Forwarder {
        component,
        stream,
        sink,
        tail,
        dropped: 0,
    };
    let mut pending = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 8192];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&chunk[..n]);
        forwarder.emit_complete_lines(&mut pending);
    }
    if !pending.is_empty() {
        forwarder.emit(&pending);
    }
    forwarder.tail.close_stream();
    if forwarder.dropped > 0 {
        tracing::warn!(
            component = %forwarder.component,
            stream,
            "dropped {} lines of output: logging could not keep up",
            forwarder.dropped
        );
    }
    forwarder.dropped
}

struct Forwarder {
    component: Arc<str>,
    stream: &'static str,
    sink: LogSink,
    tail: OutputTail,
    dropped: u64,
}

impl Forwarder {
    /// Emits every complete line in `pending` (and overlong partial ones), keeping the rest.
    fn emit_complete_lines(&mut self, pending: &mut Vec<u8>) {
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            self.emit(&pending[start..start + end]);
            start += end + 1;
        }
        while pending.len() - start >= MAX_LINE {
            self.emit(&pending[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        pending.drain(..start);
    }

    fn emit(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw).into_owned();
        self.tail.push(&text);
        let line = LogLine {
            component: self.component.clone(),
            stream: self.stream,
            text,
            dropped_before: self.dropped,
        };
        match self.sink.0.try_send(line) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => self.dropped = 0,
            Err(TrySendError::Full(_)) => self.dropped += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pipe_pair() -> (pipe::Receiver, std::fs::File) {
        let (read, write) = nix::unistd::pipe().unwrap();
        (
            pipe::Receiver::from_owned_fd(read).unwrap(),
            std::fs::File::from(write),
        )
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_the_last_partial_one() {
        let (reader, mut writer) = pipe_pair();
        let (sink, rx) = LogSink::new(16);
        writer.write_all(b"one\r\ntwo\nthree").unwrap();
        drop(writer);
        let dropped = forward(reader, "etcd".into(), "stderr", sink, OutputTail::new(1)).await;
        assert_eq!(dropped, 0);
        let lines: Vec<_> = rx.try_iter().map(|l| l.text).collect();
        assert_eq!(lines, ["one", "two", "three"]);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking_the_pipe() {
        let (reader, mut writer) = pipe_pair();
        let (sink, rx) = LogSink::new(4);
        let total = 10_000;
        let writing = std::thread::spawn(move || {
            for i in 0..total {
                writeln!(writer, "line {i}").unwrap();
            }
        });
        // Nobody drains `rx` while the pipe is read: the writer could only finish (far beyond the
        // pipe buffer) because the reader kept reading.
        let dropped = forward(reader, "etcd".into(), "stdout", sink, OutputTail::new(1)).await;
        writing.join().unwrap();
        let kept: Vec<_> = rx.try_iter().collect();
        assert_eq!(kept.len(), 4);
        assert_eq!(dropped, total - 4);
    }

    #[test]
    fn dropped_lines_are_reported_with_the_next_line_that_fits() {
        let (sink, rx) = LogSink::new(1);
        let mut forwarder = Forwarder {
            component: "x".into(),
            stream: "stdout",
            sink,
            tail: OutputTail::new(1),
            dropped: 0,
        };
        let mut pending = b"a\nb\nc\n".to_vec();
        forwarder.emit_complete_lines(&mut pending);
        assert_eq!(rx.recv().unwrap().text, "a");
        forwarder.emit(b"d");
        let next = rx.recv().unwrap();
        assert_eq!((next.text.as_str(), next.dropped_before), ("d", 2));
        assert_eq!(forwarder.dropped, 0);
    }

    #[test]
    fn overlong_lines_are_split() {
        let (sink, rx) = LogSink::new(8);
        let mut forwarder = Forwarder {
            component: "x".into(),
            stream: "stdout",
            sink,
            tail: OutputTail::new(1),
            dropped: 0,
        };
        let mut pending = vec![b'a'; MAX_LINE + 10];
        forwarder.emit_complete_lines(&mut pending);
        assert_eq!(pending.len(), 10);
        assert_eq!(rx.try_iter().next().unwrap().text.len(), MAX_LINE);
    }
}
