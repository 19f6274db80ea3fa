//! Container logs in the kubelet CRI format: one record per line,
//! `<RFC3339 UTC with 9 fractional digits> <stdout|stderr> <F|P> <content>`, where `P` marks a
//! partial record (a line longer than [`MAX_RECORD`], continued by the next record) and `F` the
//! record that ends a line. It owns the copier that turns a byte stream into records and the
//! reader that turns records back into output (with `follow`). It must never reorder the
//! records of one stream or drop bytes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::format_description;

/// Longest content of one record; longer lines are split into `P` records (containerd's default
/// `max_container_log_line_size` is 16 KiB).
pub const MAX_RECORD: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The timestamp exactly as written.
    pub timestamp: String,
    pub stream: Stream,
    /// `false` for a `P` record (the line continues in the next record).
    pub full: bool,
    pub content: Vec<u8>,
}

/// Format `now` as the CRI log timestamp (`2026-01-01T00:00:00.000000000Z`).
pub fn timestamp(now: OffsetDateTime) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    now.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_default()
}

/// Parse one record line (without its trailing newline).
pub fn parse_record(line: &[u8]) -> Option<LogRecord> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some(LogRecord {
        timestamp: ts,
        stream,
        full,
        content: parts.next().unwrap_or_default().to_vec(),
    })
}

/// A log file shared by the stdout and stderr copiers; each record is written with one
/// `write_all` under the lock, so records never interleave.
#[derive(Debug, Clone)]
pub struct LogWriter {
    file: Arc<Mutex<File>>,
}

impl LogWriter {
    pub fn new(file: File) -> Self {
        LogWriter {
            file: Arc::new(Mutex::new(file)),
        }
    }

    fn record(&self, stream: Stream, full: bool, content: &[u8]) -> io::Result<()> {
        let ts = timestamp(OffsetDateTime::now_utc());
        let mut rec = Vec::with_capacity(ts.len() + content.len() + 12);
        rec.extend_from_slice(ts.as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.as_str().as_bytes());
        rec.extend_from_slice(if full { b" F " } else { b" P " });
        rec.extend_from_slice(content);
        rec.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&rec)
    }

    /// Copy `reader` into records until EOF; a trailing unterminated line becomes an `F` record.
    pub fn copy(&self, stream: Stream, mut reader: impl Read) -> io::Result<u64> {
        let mut buf = vec![0u8; 32 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n as u64;
            pending.extend_from_slice(&buf[..n]);
            let mut start = 0;
            while let Some(pos) = pending[start..].iter().position(|b| *b == b'\n') {
                let line = &pending[start..start + pos];
                let chunks = split_record(line);
                for (i, chunk) in chunks.iter().enumerate() {
                    self.record(stream, i + 1 == chunks.len(), chunk)?;
                }
                start += pos + 1;
            }
            pending.drain(..start);
            while pending.len() > MAX_RECORD {
                self.record(stream, false, &pending[..MAX_RECORD])?;
                pending.drain(..MAX_RECORD);
            }
        }
        if !pending.is_empty() {
            self.record(stream, true, &pending)?;
        }
        Ok(total)
    }
}

/// A line cut into record-sized chunks (one empty chunk for an empty line).
fn split_record(line: &[u8]) -> Vec<&[u8]> {
    if line.is_empty() {
        return vec![line];
    }
    line.chunks(MAX_RECORD).collect()
}

/// How to print a log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep reading new records until the container exits.
    pub follow: bool,
    /// Print each line prefixed with its timestamp.
    pub timestamps: bool,
    /// Only the last N lines (N full lines; counted before following).
    pub tail: Option<usize>,
}

/// Print the records of `file` to `stdout`/`stderr` (by stream). With `follow`, poll for new
/// records until `running()` returns false and the file has no more data.
pub fn print_log(
    file: File,
    opts: LogOptions,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    mut running: impl FnMut() -> bool,
) -> io::Result<()> {
    let mut reader = BufReader::new(file);
    let skip = match opts.tail {
        Some(n) => {
            let full_lines = count_full(&mut reader)?;
            reader.rewind()?;
            full_lines.saturating_sub(n)
        }
        None => 0,
    };
    let mut skipped = 0usize;
    let mut at_line_start = [true, true];
    let mut line = Vec::new();
    let mut draining = false;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n > 0 && line.ends_with(b"\n") {
            line.pop();
            let Some(rec) = parse_record(&line) else {
                continue;
            };
            if skipped < skip {
                if rec.full {
                    skipped += 1;
                }
                continue;
            }
            let (out, idx): (&mut dyn Write, usize) = match rec.stream {
                Stream::Stdout => (&mut *stdout, 0),
                Stream::Stderr => (&mut *stderr, 1),
            };
            if opts.timestamps && at_line_start[idx] {
                out.write_all(rec.timestamp.as_bytes())?;
                out.write_all(b" ")?;
            }
            out.write_all(&rec.content)?;
            if rec.full {
                out.write_all(b"\n")?;
            }
            at_line_start[idx] = rec.full;
            out.flush()?;
            continue;
        }
        if n > 0 {
            // A record still being written: read it again from its start later.
            reader.seek_relative(-(n as i64))?;
        }
        if !opts.follow || draining {
            stdout.flush()?;
            stderr.flush()?;
            return Ok(());
        }
        if !running() {
            // One more pass reads what was written before the exit was observed.
            draining = true;
            continue;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count_full(reader: &mut BufReader<File>) -> io::Result<usize> {
    let mut n = 0;
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line)? > 0 {
        if line.ends_with(b"\n") && parse_record(&line[..line.len() - 1]).is_some_and(|r| r.full) {
            n += 1;
        }
        line.clear();
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_to_string(input: &[u8], stream: Stream) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let w = LogWriter::new(File::create(&path).unwrap());
        assert_eq!(w.copy(stream, input).unwrap(), input.len() as u64);
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn timestamps_have_nine_fractional_digits_in_utc() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.5 +02:00);
        assert_eq!(timestamp(t), "2026-01-02T01:04:05.500000000Z");
    }

    #[test]
    fn lines_become_full_records_and_a_trailing_fragment_too() {
        let log = copy_to_string(b"hello\n\nworld", Stream::Stdout);
        let recs: Vec<LogRecord> = log
            .lines()
            .map(|l| parse_record(l.as_bytes()).unwrap())
            .collect();
        assert_eq!(recs.len(), 3, "{log}");
        assert_eq!(recs[0].content, b"hello");
        assert_eq!(recs[1].content, b"");
        assert_eq!(recs[2].content, b"world");
        assert!(recs.iter().all(|r| r.full && r.stream == Stream::Stdout));
        let first = log.lines().next().unwrap();
        assert_eq!(
            first.len(),
            "2026-01-01T00:00:00.000000000Z stdout F hello".len(),
            "{first}"
        );
        assert!(first.ends_with("Z stdout F hello"), "{first}");
    }

    #[test]
    fn long_lines_split_into_partial_records() {
        let mut input = vec![b'a'; MAX_RECORD * 2 + 10];
        input.push(b'\n');
        let log = copy_to_string(&input, Stream::Stderr);
        let recs: Vec<LogRecord> = log
            .lines()
            .map(|l| parse_record(l.as_bytes()).unwrap())
            .collect();
        assert_eq!(
            recs.iter().map(|r| r.full).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert_eq!(
            recs.iter().map(|r| r.content.len()).sum::<usize>(),
            MAX_RECORD * 2 + 10
        );
        assert!(recs.iter().all(|r| r.stream == Stream::Stderr));
    }

    #[test]
    fn printing_reassembles_streams_partials_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:00.000000000Z stdout F one\n\
             2026-01-01T00:00:01.000000000Z stderr P ab\n\
             2026-01-01T00:00:02.000000000Z stderr F cd\n\
             garbage line\n\
             2026-01-01T00:00:03.000000000Z stdout F two\n\
             2026-01-01T00:00:04.000000000Z stdout F thr",
        )
        .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        print_log(
            File::open(&path).unwrap(),
            LogOptions::default(),
            &mut out,
            &mut err,
            || false,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "one\ntwo\n",
            "unterminated record is not yet complete"
        );
        assert_eq!(String::from_utf8(err).unwrap(), "abcd\n");

        let (mut out, mut err) = (Vec::new(), Vec::new());
        let opts = LogOptions {
            tail: Some(1),
            timestamps: true,
            ..Default::default()
        };
        print_log(File::open(&path).unwrap(), opts, &mut out, &mut err, || {
            false
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-01T00:00:03.000000000Z two\n"
        );
        assert!(err.is_empty());
    }

    #[test]
    fn follow_reads_records_appended_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let w = LogWriter::new(File::create(&path).unwrap());
        w.copy(Stream::Stdout, &b"first\n"[..]).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(250));
            w.copy(Stream::Stdout, &b"second\n"[..]).unwrap();
            tx.send(()).unwrap();
        });
        let mut done = false;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let opts = LogOptions {
            follow: true,
            ..Default::default()
        };
        print_log(File::open(&path).unwrap(), opts, &mut out, &mut err, || {
            done = done || rx.try_recv().is_ok();
            !done
        })
        .unwrap();
        writer.join().unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "first\nsecond\n");
    }
}
