//! Reading a container's CRI-format log the way kubelet's `ReadLogs` serves `kubectl logs`: `sinceTime` /
//! `sinceSeconds` drop older records, `tailLines` keeps the last N lines, `timestamps` prefixes each record with
//! its RFC 3339 nanosecond timestamp, `limitBytes` stops after that many bytes, and `follow` keeps reading
//! while the container runs. The reader runs on a blocking thread and hands chunks to the HTTP response
//! through a bounded channel, so a slow client slows the reader rather than growing memory. It must never
//! reorder or alter the records' content.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use runtime::logs::parse_record;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;

/// kubelet's log options (`v1.PodLogOptions` as the API server forwards them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogQuery {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail: Option<usize>,
    pub since: Option<OffsetDateTime>,
    pub limit_bytes: Option<u64>,
}

fn parse_bool(q: &HashMap<String, String>, key: &str) -> Result<bool, String> {
    match q.get(key).map(String::as_str) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(v) => Err(format!(
            "{key}: Invalid value: {v:?}: must be true or false"
        )),
    }
}

fn parse_int(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>, String> {
    match q.get(key) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{key}: Invalid value: {v:?}: must be an integer")),
    }
}

impl LogQuery {
    /// Parse the query string; errors are the API server's validation texts.
    pub fn parse(q: &HashMap<String, String>, now: OffsetDateTime) -> Result<LogQuery, String> {
        let mut out = LogQuery {
            follow: parse_bool(q, "follow")?,
            previous: parse_bool(q, "previous")?,
            timestamps: parse_bool(q, "timestamps")?,
            ..Default::default()
        };
        if let Some(n) = parse_int(q, "tailLines")? {
            if n < 0 {
                return Err(format!(
                    "tailLines: Invalid value: {n}: must be greater than or equal to 0"
                ));
            }
            out.tail = Some(n as usize);
        }
        if let Some(n) = parse_int(q, "limitBytes")? {
            if n < 1 {
                return Err(format!(
                    "limitBytes: Invalid value: {n}: must be greater than 0"
                ));
            }
            out.limit_bytes = Some(n as u64);
        }
        let since_seconds = parse_int(q, "sinceSeconds")?;
        let since_time = q.get("sinceTime");
        if since_seconds.is_some() && since_time.is_some() {
            return Err("at most one of `sinceTime` or `sinceSeconds` may be specified".into());
        }
        if let Some(s) = since_seconds {
            if s < 1 {
                return Err(format!(
                    "sinceSeconds: Invalid value: {s}: must be greater than 0"
                ));
            }
            out.since = Some(now - Duration::from_secs(s as u64));
        }
        if let Some(t) = since_time {
            out.since = Some(OffsetDateTime::parse(t, &Rfc3339).map_err(|e| {
                format!("sinceTime: Invalid value: {t:?}: must be an RFC 3339 time: {e}")
            })?);
        }
        Ok(out)
    }
}

/// Byte offset where the last `n` lines start (records after the n-th `F` record from the end).
fn tail_offset(file: &mut File, n: usize) -> std::io::Result<u64> {
    let mut reader = BufReader::new(&mut *file);
    let mut ends: Vec<u64> = Vec::new();
    let mut pos = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 || line.last() != Some(&b'\n') {
            break;
        }
        pos += read as u64;
        if parse_record(&line[..line.len() - 1]).is_some_and(|r| r.full) {
            ends.push(pos);
        }
    }
    Ok(if n == 0 {
        pos
    } else if ends.len() > n {
        ends[ends.len() - n - 1]
    } else {
        0
    })
}

/// Stream the log at `path`; `alive` tells whether the container still runs (for `follow`).
pub(crate) fn stream(
    path: PathBuf,
    query: LogQuery,
    alive: impl Fn() -> bool + Send + 'static,
) -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        if let Err(e) = copy(&path, &query, &alive, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

fn copy(
    path: &PathBuf,
    q: &LogQuery,
    alive: &dyn Fn() -> bool,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        // A container that never wrote has no log file yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !q.follow => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => loop {
            std::thread::sleep(Duration::from_millis(100));
            if let Ok(f) = File::open(path) {
                break f;
            }
            if !alive() || tx.is_closed() {
                return Ok(());
            }
        },
        Err(e) => return Err(e),
    };
    if let Some(n) = q.tail {
        let off = tail_offset(&mut file, n)?;
        file.seek(SeekFrom::Start(off))?;
    }
    let mut reader = BufReader::new(file);
    let mut pending: Vec<u8> = Vec::new();
    let mut left = q.limit_bytes;
    let mut finishing = false;
    loop {
        let mut chunk = Vec::new();
        let mut read_any = false;
        // Gather what is available now into one chunk (bounded) before sending.
        while chunk.len() < 64 * 1024 {
            let n = reader.read_until(b'\n', &mut pending)?;
            if n == 0 {
                break;
            }
            read_any = true;
            if pending.last() != Some(&b'\n') {
                // A record still being written: wait for its end.
                continue;
            }
            if let Some(rec) = parse_record(&pending[..pending.len() - 1]) {
                let keep = match q.since {
                    Some(since) => {
                        OffsetDateTime::parse(&rec.timestamp, &Rfc3339).map_or(true, |t| t >= since)
                    }
                    None => true,
                };
                if keep {
                    if q.timestamps {
                        chunk.extend_from_slice(rec.timestamp.as_bytes());
                        chunk.push(b' ');
                    }
                    chunk.extend_from_slice(&rec.content);
                    if rec.full {
                        chunk.push(b'\n');
                    }
                }
            }
            pending.clear();
        }
        if let Some(l) = left.as_mut() {
            if chunk.len() as u64 >= *l {
                chunk.truncate(*l as usize);
                if !chunk.is_empty() {
                    let _ = tx.blocking_send(Ok(Bytes::from(chunk)));
                }
                return Ok(());
            }
            *l -= chunk.len() as u64;
        }
        if !chunk.is_empty() && tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
            return Ok(());
        }
        if read_any {
            continue;
        }
        if !q.follow || finishing {
            return Ok(());
        }
        if tx.is_closed() {
            return Ok(());
        }
        if !alive() {
            // One more pass drains what the shim wrote before the exit was recorded.
            finishing = true;
            continue;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_log(lines: &[&str]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        f
    }

    fn read_all(path: PathBuf, q: LogQuery) -> String {
        let mut rx = stream(path, q, || false);
        let mut out = Vec::new();
        while let Some(chunk) = rx.blocking_recv() {
            out.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    const LOG: &[&str] = &[
        "2026-01-01T00:00:01.000000000Z stdout F one",
        "2026-01-01T00:00:02.000000000Z stderr F two",
        "2026-01-01T00:00:03.000000000Z stdout P thr",
        "2026-01-01T00:00:03.500000000Z stdout F ee",
        "2026-01-01T00:00:04.000000000Z stdout F four",
    ];

    #[test]
    fn records_become_lines_and_partial_records_are_joined() {
        let f = write_log(LOG);
        let out = read_all(f.path().into(), LogQuery::default());
        assert_eq!(out, "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn tail_counts_whole_lines_and_zero_prints_nothing() {
        let f = write_log(LOG);
        let q = |n| LogQuery {
            tail: Some(n),
            ..Default::default()
        };
        assert_eq!(read_all(f.path().into(), q(2)), "three\nfour\n");
        assert_eq!(read_all(f.path().into(), q(10)), "one\ntwo\nthree\nfour\n");
        assert_eq!(read_all(f.path().into(), q(0)), "");
    }

    #[test]
    fn timestamps_since_and_limit_bytes_apply_like_kubelet() {
        let f = write_log(LOG);
        let since = OffsetDateTime::parse("2026-01-01T00:00:02Z", &Rfc3339).unwrap();
        let out = read_all(
            f.path().into(),
            LogQuery {
                since: Some(since),
                timestamps: true,
                tail: Some(3),
                ..Default::default()
            },
        );
        assert_eq!(
            out,
            "2026-01-01T00:00:02.000000000Z two\n2026-01-01T00:00:03.000000000Z thr\
             2026-01-01T00:00:03.500000000Z ee\n2026-01-01T00:00:04.000000000Z four\n"
        );
        let limited = read_all(
            f.path().into(),
            LogQuery {
                limit_bytes: Some(6),
                ..Default::default()
            },
        );
        assert_eq!(limited, "one\ntw");
    }

    #[test]
    fn follow_streams_appended_records_until_the_container_stops() {
        let mut f = write_log(&LOG[..1]);
        let path: PathBuf = f.path().into();
        let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = alive.clone();
        let mut rx = stream(
            path,
            LogQuery {
                follow: true,
                ..Default::default()
            },
            move || flag.load(std::sync::atomic::Ordering::SeqCst),
        );
        assert_eq!(&rx.blocking_recv().unwrap().unwrap()[..], b"one\n");
        writeln!(f, "{}", LOG[1]).unwrap();
        f.flush().unwrap();
        assert_eq!(&rx.blocking_recv().unwrap().unwrap()[..], b"two\n");
        writeln!(f, "{}", LOG[4]).unwrap();
        f.flush().unwrap();
        alive.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut rest = Vec::new();
        while let Some(c) = rx.blocking_recv() {
            rest.extend_from_slice(&c.unwrap());
        }
        assert_eq!(rest, b"four\n");
    }

    #[test]
    fn query_errors_use_the_api_servers_texts() {
        let now = OffsetDateTime::now_utc();
        let q = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            LogQuery::parse(&m, now)
        };
        assert_eq!(
            q(&[("tailLines", "-1")]).unwrap_err(),
            "tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        assert!(q(&[("sinceSeconds", "5"), ("sinceTime", "2026-01-01T00:00:00Z")]).is_err());
        let ok = q(&[("follow", "true"), ("tailLines", "3"), ("limitBytes", "10")]).unwrap();
        assert!(ok.follow && ok.tail == Some(3) && ok.limit_bytes == Some(10));
        assert_eq!(
            q(&[("sinceSeconds", "60")]).unwrap().since,
            Some(now - Duration::from_secs(60))
        );
    }
}
