//! Real-runc tests of the runtime crate: a busybox rootfs is built per test and run with
//! Debian's runc as root. This binary also acts as the detached-container shim (`__shim <root>
//! <id>`), exactly as berth re-executes itself. Nothing is skipped: missing runc or busybox
//! (apt-get install runc busybox-static) fails the run.

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use oci::manifest::ContainerConfig;
use runtime::{
    CgroupMode, CreateOptions, Error, ForegroundIo, LogOptions, Overrides, RootfsSource, Runtime,
    ShimCommand, Status,
};

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "echo", "id", "sleep", "pwd", "cat", "env", "hostname", "true",
];

fn main() {
    runtime::exit_if_shim("__shim");
    let tests: &[(&str, fn())] = &[
        (
            "info_names_runc_and_the_cgroup_setup",
            info_names_runc_and_the_cgroup_setup,
        ),
        (
            "foreground_echo_prints_hello_and_exits_zero",
            foreground_echo_prints_hello_and_exits_zero,
        ),
        (
            "foreground_exit_code_is_returned_and_recorded",
            foreground_exit_code_is_returned_and_recorded,
        ),
        (
            "env_workdir_and_numeric_user_are_applied",
            env_workdir_and_numeric_user_are_applied,
        ),
        (
            "named_user_and_group_resolve_from_the_rootfs",
            named_user_and_group_resolve_from_the_rootfs,
        ),
        (
            "etc_files_are_bind_mounted_with_the_hostname",
            etc_files_are_bind_mounted_with_the_hostname,
        ),
        (
            "missing_executable_surfaces_runcs_message",
            missing_executable_surfaces_runcs_message,
        ),
        (
            "detached_run_writes_cri_log_and_records_exit",
            detached_run_writes_cri_log_and_records_exit,
        ),
        (
            "stop_escalates_to_sigkill_after_the_grace_period",
            stop_escalates_to_sigkill_after_the_grace_period,
        ),
        (
            "stop_returns_early_when_the_process_exits_on_sigterm",
            stop_returns_early_when_the_process_exits_on_sigterm,
        ),
        (
            "ps_lists_names_are_unique_and_rm_cleans_everything",
            ps_lists_names_are_unique_and_rm_cleans_everything,
        ),
        (
            "auto_remove_deletes_after_exit",
            auto_remove_deletes_after_exit,
        ),
        (
            "mounted_rootfs_is_unmounted_on_remove",
            mounted_rootfs_is_unmounted_on_remove,
        ),
        (
            "logs_follow_streams_until_exit",
            logs_follow_streams_until_exit,
        ),
    ];
    testkit::runner::run_tests(tests);
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    rootfs: PathBuf,
    rt: Runtime,
}

/// A state root and a busybox rootfs with users `app` (1000) and `web` (1001, groups staff/wheel).
fn env() -> Env {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} missing: apt-get install busybox-static"
    );
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::create_dir_all(rootfs.join("srv")).unwrap();
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    for a in APPLETS {
        symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nweb:x:1001:1001::/srv:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\napp:x:1000:\nweb:x:1001:\nstaff:x:50:web\nwheel:x:10:web\n",
    )
    .unwrap();
    let root = dir.path().join("state");
    let rt = Runtime::new(&root).expect("runtime opens (runc installed, cgroups mounted)");
    Env {
        _dir: dir,
        root,
        rootfs,
        rt,
    }
}

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn shim() -> ShimCommand {
    ShimCommand {
        program: std::env::current_exe().unwrap(),
        args: vec!["__shim".into()],
    }
}

fn create(
    e: &Env,
    name: &str,
    config: ContainerConfig,
    overrides: Overrides,
) -> runtime::ContainerState {
    e.rt.create(CreateOptions {
        name: Some(name.into()),
        image: "test/busybox:latest".into(),
        config: Some(config),
        rootfs: RootfsSource::Path(e.rootfs.clone()),
        overrides,
        auto_remove: false,
    })
    .expect("create")
}

fn cmd(command: &[&str]) -> Overrides {
    Overrides {
        command: Some(argv(command)),
        ..Default::default()
    }
}

/// Run in the foreground with stdout/stderr captured in files.
fn run_capture(e: &Env, name: &str) -> (runtime::Result<i32>, String, String) {
    let out = e.root.join(format!("{name}.out"));
    let err = e.root.join(format!("{name}.err"));
    let io = ForegroundIo {
        stdin: Stdio::null(),
        stdout: Stdio::from(fs::File::create(&out).unwrap()),
        stderr: Stdio::from(fs::File::create(&err).unwrap()),
    };
    let code = e.rt.run_foreground(name, io);
    (
        code,
        fs::read_to_string(&out).unwrap(),
        fs::read_to_string(&err).unwrap(),
    )
}

fn info_names_runc_and_the_cgroup_setup() {
    let e = env();
    let info = e.rt.info().unwrap();
    assert!(info.runc_version.starts_with("runc version"), "{info:?}");
    let unified = fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.get(1) == Some(&"/sys/fs/cgroup") && f.get(2) == Some(&"cgroup2")
        });
    assert_eq!(info.cgroups.mode == CgroupMode::Unified, unified, "{info}");
    let text = info.to_string();
    assert!(
        text.contains("cgroups: cgroup v") && text.contains("network: host"),
        "{text}"
    );
}

fn foreground_echo_prints_hello_and_exits_zero() {
    let e = env();
    create(
        &e,
        "hello",
        ContainerConfig::default(),
        cmd(&["echo", "hello"]),
    );
    let (code, out, err) = run_capture(&e, "hello");
    assert_eq!(code.unwrap(), 0, "stderr: {err}");
    assert_eq!(out, "hello\n");
    let st = e.rt.inspect("hello").unwrap();
    assert_eq!((st.status, st.exit_code), (Status::Exited, Some(0)));
    assert!(st.started.is_some() && st.finished.is_some());
    e.rt.remove("hello", false).unwrap();
}

fn foreground_exit_code_is_returned_and_recorded() {
    let e = env();
    let config = ContainerConfig {
        entrypoint: Some(argv(&["sh", "-c"])),
        cmd: Some(argv(&["exit 3"])),
        ..Default::default()
    };
    create(&e, "three", config, Overrides::default());
    let (code, _, err) = run_capture(&e, "three");
    assert_eq!(code.unwrap(), 3, "{err}");
    assert_eq!(e.rt.inspect("three").unwrap().exit_code, Some(3));
    let again =
        e.rt.run_foreground("three", ForegroundIo::default())
            .unwrap_err();
    assert!(matches!(again, Error::NotStartable { .. }), "{again}");
    e.rt.remove("three", false).unwrap();
}

fn env_workdir_and_numeric_user_are_applied() {
    let e = env();
    let config = ContainerConfig {
        env: argv(&["FOO=image", "KEEP=yes"]),
        working_dir: Some("/srv".into()),
        user: Some("1000".into()),
        cmd: Some(argv(&[
            "sh",
            "-c",
            "echo $FOO $KEEP $PATH $HOME; pwd; id -u; id -g",
        ])),
        ..Default::default()
    };
    let overrides = Overrides {
        env: argv(&["FOO=override"]),
        ..Default::default()
    };
    create(&e, "envs", config, overrides);
    let (code, out, err) = run_capture(&e, "envs");
    assert_eq!(code.unwrap(), 0, "{err}");
    assert_eq!(
        out,
        "override yes /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /home/app\n/srv\n1000\n1000\n"
    );
}

fn named_user_and_group_resolve_from_the_rootfs() {
    let e = env();
    let run = |name: &str, user: &str| {
        let overrides = Overrides {
            user: Some(user.into()),
            ..cmd(&["id"])
        };
        create(&e, name, ContainerConfig::default(), overrides);
        let (code, out, err) = run_capture(&e, name);
        assert_eq!(code.unwrap(), 0, "{err}");
        out
    };
    // Supplementary groups come from /etc/group membership when no group is given.
    assert_eq!(
        run("web", "web").trim(),
        "uid=1001(web) gid=1001(web) groups=10(wheel),50(staff)"
    );
    // An explicit group replaces the primary group and drops the supplementary ones.
    assert_eq!(
        run("webstaff", "web:staff").trim(),
        "uid=1001(web) gid=50(staff)"
    );
    let e2 = e.rt.create(CreateOptions {
        name: Some("nouser".into()),
        image: "x".into(),
        config: None,
        rootfs: RootfsSource::Path(e.rootfs.clone()),
        overrides: Overrides {
            user: Some("ghost".into()),
            ..cmd(&["id"])
        },
        auto_remove: false,
    });
    let err = e2.unwrap_err().to_string();
    assert!(
        err.contains("ghost") && err.contains("/etc/passwd"),
        "{err}"
    );
    assert!(
        matches!(e.rt.inspect("nouser"), Err(Error::NotFound(_))),
        "failed create leaves nothing"
    );
}

fn etc_files_are_bind_mounted_with_the_hostname() {
    let e = env();
    let overrides = Overrides {
        hostname: Some("boxy".into()),
        ..cmd(&["sh", "-c", "hostname; cat /etc/hostname; cat /etc/hosts"])
    };
    create(&e, "etc", ContainerConfig::default(), overrides);
    let (code, out, err) = run_capture(&e, "etc");
    assert_eq!(code.unwrap(), 0, "{err}");
    assert!(
        out.starts_with("boxy\nboxy\n127.0.0.1\tlocalhost\n"),
        "{out}"
    );
    assert!(out.contains("127.0.1.1\tboxy"), "{out}");
}

fn missing_executable_surfaces_runcs_message() {
    let e = env();
    create(
        &e,
        "nope",
        ContainerConfig::default(),
        cmd(&["/no/such/binary"]),
    );
    let (res, _, _) = run_capture(&e, "nope");
    let err = res.unwrap_err();
    assert!(matches!(err, Error::Runc { command: "run", .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/no/such/binary") && text.contains("cgroups:"),
        "{text}"
    );
    let st = e.rt.inspect("nope").unwrap();
    assert_eq!(st.status, Status::Exited);
    assert!(st.error.unwrap().contains("/no/such/binary"));
    e.rt.remove("nope", false).unwrap();
}

fn detached_run_writes_cri_log_and_records_exit() {
    let e = env();
    create(
        &e,
        "bg",
        ContainerConfig::default(),
        cmd(&["sh", "-c", "echo out; echo err >&2; sleep 0.2; exit 7"]),
    );
    let st = e.rt.start_detached("bg", &shim()).unwrap();
    assert_eq!(st.status, Status::Running);
    assert!(st.pid.is_some());
    let done = e.rt.wait("bg", Some(Duration::from_secs(20))).unwrap();
    assert_eq!(
        (done.status, done.exit_code),
        (Status::Exited, Some(7)),
        "{done:?}"
    );
    let log = fs::read_to_string(e.rt.log_path(&st.id)).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let re_ts = |l: &str| {
        let ts = l.split(' ').next().unwrap();
        ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.'
    };
    assert!(lines.iter().all(|l| re_ts(l)), "{log}");
    assert!(lines.iter().any(|l| l.ends_with(" stdout F out")), "{log}");
    assert!(lines.iter().any(|l| l.ends_with(" stderr F err")), "{log}");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    e.rt.logs("bg", LogOptions::default(), &mut out, &mut err)
        .unwrap();
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
    e.rt.remove("bg", false).unwrap();
}

fn cgroup_dir(e: &Env, id: &str) -> PathBuf {
    match e.rt.info().unwrap().cgroups.mode {
        CgroupMode::Unified => PathBuf::from(format!("/sys/fs/cgroup/berth/{id}")),
        _ => PathBuf::from(format!("/sys/fs/cgroup/pids/berth/{id}")),
    }
}

fn stop_escalates_to_sigkill_after_the_grace_period() {
    let e = env();
    // PID 1 without a SIGTERM handler ignores SIGTERM: only SIGKILL ends it.
    let st = create(
        &e,
        "stubborn",
        ContainerConfig::default(),
        cmd(&["sleep", "1000"]),
    );
    e.rt.start_detached("stubborn", &shim()).unwrap();
    let cg = cgroup_dir(&e, &st.id);
    assert!(
        cg.is_dir(),
        "container cgroup {} exists while running",
        cg.display()
    );
    let start = Instant::now();
    let done = e.rt.stop("stubborn", Duration::from_secs(1)).unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(
        (done.status, done.exit_code),
        (Status::Exited, Some(137)),
        "{done:?}"
    );
    e.rt.remove("stubborn", false).unwrap();
    assert!(!cg.exists(), "cgroup removed");
}

fn stop_returns_early_when_the_process_exits_on_sigterm() {
    let e = env();
    let script = "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
    create(
        &e,
        "polite",
        ContainerConfig::default(),
        cmd(&["sh", "-c", script]),
    );
    let st = e.rt.start_detached("polite", &shim()).unwrap();
    let log = e.rt.log_path(&st.id);
    let t = Instant::now();
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("ready")
    {
        assert!(t.elapsed() < Duration::from_secs(10), "never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = Instant::now();
    let done = e.rt.stop("polite", Duration::from_secs(10)).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(done.exit_code, Some(0), "{done:?}");
    assert!(fs::read_to_string(&log).unwrap().contains("stdout F bye"));
    e.rt.remove("polite", false).unwrap();
}

fn ps_lists_names_are_unique_and_rm_cleans_everything() {
    let e = env();
    let a = create(
        &e,
        "alpha",
        ContainerConfig::default(),
        cmd(&["sleep", "1000"]),
    );
    create(&e, "beta", ContainerConfig::default(), cmd(&["true"]));
    let dup = e.rt.create(CreateOptions {
        name: Some("alpha".into()),
        image: "x".into(),
        config: None,
        rootfs: RootfsSource::Path(e.rootfs.clone()),
        overrides: cmd(&["true"]),
        auto_remove: false,
    });
    assert!(matches!(dup, Err(Error::NameInUse { .. })), "{dup:?}");
    e.rt.start_detached("alpha", &shim()).unwrap();
    let ps = e.rt.list().unwrap();
    let names: Vec<(&str, Status)> = ps.iter().map(|s| (s.name.as_str(), s.status)).collect();
    assert_eq!(
        names,
        [("alpha", Status::Running), ("beta", Status::Created)]
    );
    assert_eq!(
        e.rt.inspect(&a.id[..8]).unwrap().name,
        "alpha",
        "unique id prefix resolves"
    );

    let busy = e.rt.remove("alpha", false).unwrap_err();
    assert!(matches!(busy, Error::Running { .. }), "{busy}");
    let dir = e.rt.container_dir(&a.id);
    e.rt.remove("alpha", true).unwrap();
    assert!(!dir.exists(), "state dir removed");
    let runc_state = std::process::Command::new("runc")
        .arg("--root")
        .arg(e.root.join("runc"))
        .args(["state", &a.id])
        .output()
        .unwrap();
    assert!(!runc_state.status.success(), "runc forgot the container");
    e.rt.remove("beta", false).unwrap();
    assert!(e.rt.list().unwrap().is_empty());
    assert!(matches!(
        e.rt.remove("beta", false),
        Err(Error::NotFound(_))
    ));
}

fn auto_remove_deletes_after_exit() {
    let e = env();
    for detached in [false, true] {
        let st =
            e.rt.create(CreateOptions {
                name: Some(format!("tmp{detached}")),
                image: "x".into(),
                config: None,
                rootfs: RootfsSource::Path(e.rootfs.clone()),
                overrides: cmd(&["sh", "-c", "exit 4"]),
                auto_remove: true,
            })
            .unwrap();
        if detached {
            e.rt.start_detached(&st.id, &shim()).unwrap();
            let done = e.rt.wait(&st.id, Some(Duration::from_secs(20))).unwrap();
            assert_eq!(done.status, Status::Exited);
            let t = Instant::now();
            while e.rt.container_dir(&st.id).exists() {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "shim removed the container"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        } else {
            let (code, _, _) = run_capture(&e, &st.id);
            assert_eq!(code.unwrap(), 4);
            assert!(!e.rt.container_dir(&st.id).exists());
        }
    }
}

fn mounted_rootfs_is_unmounted_on_remove() {
    let e = env();
    let source = e.rootfs.clone();
    let st =
        e.rt.create(CreateOptions {
            name: Some("mounted".into()),
            image: "x".into(),
            config: None,
            rootfs: RootfsSource::Mount(Box::new(move |target: &Path| {
                nix::mount::mount(
                    Some(&source),
                    target,
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| e.to_string())
            })),
            overrides: cmd(&["echo", "from-mount"]),
            auto_remove: false,
        })
        .unwrap();
    assert!(st.rootfs_mounted && st.rootfs.starts_with(e.rt.container_dir(&st.id)));
    let (code, out, _) = run_capture(&e, "mounted");
    assert_eq!((code.unwrap(), out.as_str()), (0, "from-mount\n"));
    let mountpoint = st.rootfs.clone();
    e.rt.remove("mounted", false).unwrap();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(mountpoint.to_str().unwrap()),
        "rootfs unmounted"
    );
    assert!(
        e.rootfs.join("bin/busybox").exists(),
        "the source rootfs is untouched"
    );
}

fn logs_follow_streams_until_exit() {
    let e = env();
    create(
        &e,
        "follow",
        ContainerConfig::default(),
        cmd(&[
            "sh",
            "-c",
            "for i in 1 2 3; do echo line$i; sleep 0.3; done",
        ]),
    );
    e.rt.start_detached("follow", &shim()).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let opts = LogOptions {
        follow: true,
        ..Default::default()
    };
    e.rt.logs("follow", opts, &mut out, &mut err).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "line1\nline2\nline3\n");
    let _ = std::io::stdout().flush();
    e.rt.remove("follow", false).unwrap();
}
