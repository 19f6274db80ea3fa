//! The detached-container shim: a small process (berth re-executed with a hidden subcommand
//! that calls [`shim_main`]) that outlives the CLI. It starts a new session, becomes a child
//! subreaper, runs `runc run --detach` with the container's stdout/stderr on two pipes,
//! reports `ok <pid>` (or `error <message>`) on its own stdout to the CLI that spawned it, then
//! copies both pipes into the CRI-format log, reaps the container's init process (re-parented
//! to it when `runc run --detach` exits), records the exit code and time, releases the runc container
//! (`runc delete`) and, for `auto_remove` containers, removes everything.
//!
//! Why this design: runc's `--detach` needs someone to hold the stdio pipes and to wait for the
//! process; a subreaper shim does both with plain pipes (no fifo juggling, no polling) and is
//! what containerd's shim does. It must never exit before the container's output is drained
//! and its exit recorded, and never write to the terminal of the CLI.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;

use nix::fcntl::OFlag;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use time::OffsetDateTime;

use crate::container::{Runtime, read_pid};
use crate::error::{Error, Result};
use crate::logs::{LogWriter, Stream};
use crate::state::Status;

/// Entry point of the hidden shim subcommand: `<state root> <container id> <runc>`, with the runc of the
/// runtime that started it. Returns the process exit code (0 once the container's exit is recorded).
pub fn shim_main(root: &Path, id: &str, runc: &Path) -> i32 {
    let mut report = std::io::stdout();
    let runtime = match Runtime::with_runc(root, Some(runc)) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(report, "error {e}");
            return 1;
        }
    };
    match run_shim(&runtime, id, &mut report) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shim for container {id}: {e}");
            // Harmless when the report was already sent: the CLI stopped reading.
            let _ = writeln!(report, "error {e}");
            1
        }
    }
}

/// For a program that is its own shim without an argument parser (the test binaries): when this process
/// was started as the shim (`<program> <subcommand> <state root> <container id> <runc>`, see
/// [`crate::ShimCommand`]), runs it and exits with its code; otherwise returns.
pub fn exit_if_shim(subcommand: &str) {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let [_, sub, root, id, runc] = args.as_slice()
        && sub == subcommand
    {
        std::process::exit(shim_main(
            Path::new(root),
            &id.to_string_lossy(),
            Path::new(runc),
        ));
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("creating a pipe for", "container stdio", e.into()))
}

fn run_shim(rt: &Runtime, id: &str, report: &mut std::io::Stdout) -> Result<()> {
    // Leave the CLI's session and process group: terminal signals must not reach us.
    let _ = nix::unistd::setsid();
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| Error::io("becoming child subreaper for", id, e.into()))?;

    let st = rt.layout.load(id)?;
    let dir = rt.layout.dir(id);
    let pid_file = dir.join("pid");
    let log = LogWriter::new(rt.open_log(id)?);
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;

    // `runc run --detach` creates and starts the container in one runc process (a separate `runc start` is
    // one more Go process per container, ~8 ms of CPU, for a step nothing happens between).
    let run_log = dir.join("runc-run.log");
    let mut run = rt.runc.command("run", &run_log);
    run.arg("--detach")
        .arg("--bundle")
        .arg(&dir)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(id);
    run.stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
    let hint = format!("cgroups: {}, cgroupsPath {}", rt.cgroups, st.cgroups_path);
    let started = rt.runc.run_passthrough(run, "run", id, &run_log, &hint);
    // `run` (moved into the command) is dropped: our copies of the write ends are closed.
    if let Err(e) = started {
        rt.record_exit(id, None, Some(e.to_string()));
        let _ = rt.runc.delete(id, true, &dir.join("runc-delete.log"));
        return Err(e);
    }
    let pid = read_pid(&pid_file).ok_or_else(|| Error::Runc {
        command: "run",
        id: id.into(),
        message: format!("no pid in {}", pid_file.display()),
        hint: String::new(),
    })?;

    let copiers = [(Stream::Stdout, out_r), (Stream::Stderr, err_r)].map(|(stream, fd)| {
        let log = log.clone();
        std::thread::spawn(move || log.copy(stream, File::from(fd)))
    });

    rt.layout.update(id, |s| {
        s.status = Status::Running;
        s.pid = Some(pid);
        s.pid_start = crate::container::process_start(pid);
        s.started = Some(OffsetDateTime::now_utc());
    })?;
    let _ = writeln!(report, "ok {pid}");
    let _ = report.flush();
    // The CLI reads our stdout to EOF: point fd 1 at /dev/null so it can return.
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }

    let code = wait_for(Pid::from_raw(pid));
    for c in copiers {
        if let Ok(Err(e)) = c.join() {
            tracing::warn!(container = %id, error = %e, "copying container output failed");
        }
    }
    rt.record_exit(id, code, None);
    let _ = rt.runc.delete(id, false, &dir.join("runc-delete.log"));
    if st.auto_remove {
        rt.remove(id, true)?;
    }
    Ok(())
}

/// Reap children until `target` exits; its status as a shell reports it.
fn wait_for(target: Pid) -> Option<i32> {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == target => return Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == target => {
                return Some(128 + sig as i32);
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}
