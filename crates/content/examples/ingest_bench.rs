//! ingest_bench: measures ingest throughput and peak RSS of the content store writer.
//!
//! Usage: `cargo run -p content --release --example ingest_bench -- [MiB] [chunk KiB] [pause ms]`.
//! Streams MiB of generated data in network-sized chunks through `Store::acquire`, waits
//! `pause ms` (a download is slower than this loop), commits, and prints MB/s, the time the
//! commit took (fsync + rename) and the process's peak RSS. Writes only to a temp directory.

use std::time::Instant;

use content::{Acquired, Algorithm, Descriptor, Digester, Store};

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(512);
    let chunk_kib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let pause_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let chunk: Vec<u8> = (0..chunk_kib * 1024).map(|i| (i * 7 % 253) as u8).collect();
    let total = mib * 1024 * 1024;
    let chunks = total / chunk.len();

    let mut d = Digester::new(Algorithm::Sha256);
    for _ in 0..chunks {
        d.update(&chunk);
    }
    let size = (chunks * chunk.len()) as u64;
    let desc = Descriptor::new("application/octet-stream", d.finish(), size);

    let dir = std::env::temp_dir().join(format!("berth-ingest-bench-{}", std::process::id()));
    let store = Store::open(&dir).expect("open store");
    let start = Instant::now();
    let Acquired::Writer(mut w) = store.acquire("bench", &desc, None).expect("acquire") else {
        panic!("fresh store already has the blob");
    };
    for _ in 0..chunks {
        w.write_all(&chunk).expect("write");
    }
    let written = start.elapsed();
    std::thread::sleep(std::time::Duration::from_millis(pause_ms));
    let commit_start = Instant::now();
    w.commit().expect("commit");
    let commit = commit_start.elapsed();
    let secs = (written + commit).as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);

    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    println!(
        "{} MiB in {chunk_kib} KiB chunks: {:.0} MB/s (hash + write + commit), commit {} ms, peak RSS {} KiB",
        size >> 20,
        size as f64 / secs / 1e6,
        commit.as_millis(),
        ru.ru_maxrss
    );
}
