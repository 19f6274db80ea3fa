//! OCI runtime spec (`config.json`) generation: from an image's `ContainerConfig` plus run-time
//! overrides to a complete `oci_spec::runtime::Spec` with containerd's default Linux settings
//! (mounts, masked and read-only paths, capabilities, RLIMIT_NOFILE 1024/1024, device cgroup
//! deny-all). The `oci-spec` crate's runtime types are used because they are the maintained,
//! complete serde model of the runtime spec (youki's), so field names and enum spellings cannot
//! drift from what runc parses.
//!
//! Deliberate choices: the network namespace is NOT unshared (host network, no CNI yet) unless the
//! caller names an existing one to join ([`Overrides::network_namespace`], a pod's sandbox), a
//! cgroup namespace is unshared only on cgroup v2 (as Docker does), `noNewPrivileges` is false
//! and no terminal is allocated. This module only computes; it must never touch the filesystem
//! except through [`crate::user::resolve_user`], which reads the rootfs safely.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci::manifest::ContainerConfig;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use crate::cgroups::CgroupMode;
use crate::error::{Error, Result};
use crate::user::ExecUser;

/// `PATH` given to containers whose image sets none (Docker's and containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The OCI runtime spec version written to `config.json` (what Debian's runc 1.1 implements).
pub const OCI_VERSION: &str = "1.0.2";

/// containerd's default capability set (`defaultUnixCaps`, containerd 2.x: MKNOD, NET_RAW,
/// SETFCAP, SYS_CHROOT and AUDIT_WRITE are no longer granted).
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::Kill,
];

/// containerd's default masked paths.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// containerd's default read-only paths.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Run-time overrides of the image config (Docker / Kubernetes semantics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces the image's Entrypoint (Kubernetes `command`); the image Cmd is then ignored
    /// unless `args` are given.
    pub command: Option<Vec<String>>,
    /// Replaces the image's Cmd (Kubernetes `args`).
    pub args: Option<Vec<String>>,
    /// `KEY=VALUE` entries; they win over the image's entries with the same key.
    pub env: Vec<String>,
    /// Replaces the image's WorkingDir (must be absolute).
    pub working_dir: Option<String>,
    /// Replaces the image's User (`uid`, `uid:gid`, `name`, `name:group`).
    pub user: Option<String>,
    /// The container's hostname (default: the first 12 characters of the container id).
    pub hostname: Option<String>,
    /// Join this existing network namespace (a bind-mounted nsfs file such as a pod's
    /// `<root>/netns/<uid>`) instead of sharing the host's; the caller owns its lifetime.
    pub network_namespace: Option<PathBuf>,
}

/// Files written by the bundle and bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    pub hostname: PathBuf,
}

/// Everything [`build_spec`] needs.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub config: Option<&'a ContainerConfig>,
    pub overrides: &'a Overrides,
    /// Absolute path of the root filesystem.
    pub rootfs: &'a Path,
    /// The resolved user (see [`crate::user::resolve_user`]).
    pub user: &'a ExecUser,
    pub hostname: &'a str,
    pub etc_files: &'a EtcFiles,
    pub cgroups_path: &'a str,
    pub cgroup_mode: CgroupMode,
}

/// The process argv: `command` replaces Entrypoint, `args` replace Cmd; with `command` and no
/// `args` the image Cmd is dropped (Kubernetes and Docker `--entrypoint` behaviour).
pub fn process_args(
    config: Option<&ContainerConfig>,
    overrides: &Overrides,
) -> Result<Vec<String>> {
    let image_entrypoint = config
        .and_then(|c| c.entrypoint.clone())
        .unwrap_or_default();
    let image_cmd = config.and_then(|c| c.cmd.clone()).unwrap_or_default();
    let argv = match (&overrides.command, &overrides.args) {
        (Some(command), Some(args)) => [command.clone(), args.clone()].concat(),
        (Some(command), None) => command.clone(),
        (None, Some(args)) => [image_entrypoint, args.clone()].concat(),
        (None, None) => [image_entrypoint, image_cmd].concat(),
    };
    if argv.is_empty() || argv[0].is_empty() {
        return Err(Error::NoCommand);
    }
    Ok(argv)
}

/// The image's `User` unless overridden (empty means root).
pub fn user_spec(config: Option<&ContainerConfig>, overrides: &Overrides) -> String {
    overrides
        .user
        .clone()
        .or_else(|| config.and_then(|c| c.user.clone()))
        .unwrap_or_default()
}

/// Merge environments: image entries first (in order), an override replaces the entry with the
/// same key in place, new keys are appended; `PATH` defaults to [`DEFAULT_PATH`], `HOSTNAME` to
/// the hostname and `HOME` to the user's home when absent.
pub fn merge_env(
    image: &[String],
    overrides: &[String],
    hostname: &str,
    home: &str,
) -> Result<Vec<String>> {
    fn key(entry: &str) -> &str {
        entry.split_once('=').map_or(entry, |(k, _)| k)
    }
    let mut env: Vec<String> = Vec::with_capacity(image.len() + overrides.len() + 3);
    for entry in image {
        match env.iter_mut().find(|e| key(e) == key(entry)) {
            Some(slot) => *slot = entry.clone(),
            None => env.push(entry.clone()),
        }
    }
    for entry in overrides {
        match entry.split_once('=') {
            Some((k, _)) if !k.is_empty() => {}
            _ => {
                return Err(Error::InvalidConfig {
                    field: "env",
                    value: entry.clone(),
                    reason: "must be KEY=VALUE with a non-empty KEY".into(),
                });
            }
        }
        match env.iter_mut().find(|e| key(e) == key(entry)) {
            Some(slot) => *slot = entry.clone(),
            None => env.push(entry.clone()),
        }
    }
    let has = |env: &[String], k: &str| env.iter().any(|e| key(e) == k);
    if !has(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={home}"));
    }
    Ok(env)
}

/// The working directory: override, else image WorkingDir, else `/`; must be absolute.
pub fn working_dir(config: Option<&ContainerConfig>, overrides: &Overrides) -> Result<String> {
    let (field, value) = match (
        &overrides.working_dir,
        config.and_then(|c| c.working_dir.as_ref()),
    ) {
        (Some(w), _) => ("working dir override", w.clone()),
        (None, Some(w)) => ("image config WorkingDir", w.clone()),
        (None, None) => return Ok("/".into()),
    };
    if value.is_empty() {
        return Ok("/".into());
    }
    if !value.starts_with('/') {
        return Err(Error::InvalidConfig {
            field,
            value,
            reason: "the working directory must be an absolute path".into(),
        });
    }
    Ok(value)
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// containerd's default mounts plus a read-only cgroup mount and the bind-mounted
/// `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`.
pub fn default_mounts(etc: &EtcFiles) -> Result<Vec<Mount>> {
    let bind = |dest: &str, src: &Path| -> Result<Mount> {
        Ok(MountBuilder::default()
            .destination(dest)
            .typ("bind")
            .source(src)
            .options(vec![
                "rbind".to_string(),
                "rprivate".to_string(),
                "rw".to_string(),
            ])
            .build()?)
    };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/run",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
        bind("/etc/hosts", &etc.hosts)?,
        bind("/etc/resolv.conf", &etc.resolv_conf)?,
        bind("/etc/hostname", &etc.hostname)?,
    ])
}

/// Build the complete runtime spec.
pub fn build_spec(input: &SpecInput<'_>) -> Result<Spec> {
    let args = process_args(input.config, input.overrides)?;
    let image_env = input.config.map(|c| c.env.as_slice()).unwrap_or_default();
    let env = merge_env(
        image_env,
        &input.overrides.env,
        input.hostname,
        &input.user.home,
    )?;
    let cwd = working_dir(input.config, input.overrides)?;

    let caps: HashSet<Capability> = DEFAULT_CAPABILITIES.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .permitted(caps.clone())
        .effective(caps)
        // Explicitly empty: the builder's defaults would add inheritable and ambient sets.
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let mut user = UserBuilder::default()
        .uid(input.user.uid)
        .gid(input.user.gid);
    if !input.user.additional_gids.is_empty() {
        user = user.additional_gids(input.user.additional_gids.clone());
    }
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user.build()?)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .hard(1024u64)
                .soft(1024u64)
                .build()?,
        ])
        .no_new_privileges(false)
        .build()?;

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if input.cgroup_mode == CgroupMode::Unified {
        namespaces.push(LinuxNamespaceType::Cgroup);
    }
    let mut namespaces = namespaces
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if let Some(path) = &input.overrides.network_namespace {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path.clone())
                .build()?,
        );
    }
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(
            DEFAULT_MASKED_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            DEFAULT_READONLY_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
        )
        .cgroups_path(PathBuf::from(input.cgroups_path))
        .resources(
            LinuxResourcesBuilder::default()
                .devices(vec![
                    LinuxDeviceCgroupBuilder::default()
                        .allow(false)
                        .access("rwm")
                        .build()?,
                ])
                .build()?,
        )
        .build()?;

    Ok(SpecBuilder::default()
        .version(OCI_VERSION)
        .root(
            RootBuilder::default()
                .path(input.rootfs)
                .readonly(false)
                .build()?,
        )
        .mounts(default_mounts(input.etc_files)?)
        .process(process)
        .hostname(input.hostname)
        .linux(linux)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ContainerConfig {
        ContainerConfig {
            entrypoint: entrypoint.map(|v| v.iter().map(|s| s.to_string()).collect()),
            cmd: cmd.map(|v| v.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }
    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_and_args_override_entrypoint_and_cmd_like_kubernetes() {
        let c = config(Some(&["/ep", "-x"]), Some(&["c1", "c2"]));
        let o = |command: Option<&[&str]>, args: Option<&[&str]>| Overrides {
            command: command.map(strings),
            args: args.map(strings),
            ..Default::default()
        };
        let table: &[(Overrides, &[&str])] = &[
            (o(None, None), &["/ep", "-x", "c1", "c2"]),
            (o(None, Some(&["a"])), &["/ep", "-x", "a"]),
            (o(Some(&["/bin/cmd"]), None), &["/bin/cmd"]),
            (
                o(Some(&["/bin/cmd"]), Some(&["a", "b"])),
                &["/bin/cmd", "a", "b"],
            ),
        ];
        for (ov, want) in table {
            assert_eq!(process_args(Some(&c), ov).unwrap(), strings(want), "{ov:?}");
        }
        let cmd_only = config(None, Some(&["/bin/sh"]));
        assert_eq!(
            process_args(Some(&cmd_only), &Overrides::default()).unwrap(),
            strings(&["/bin/sh"])
        );
        assert!(matches!(
            process_args(None, &Overrides::default()),
            Err(Error::NoCommand)
        ));
        let empty_args = o(None, Some(&[]));
        assert!(matches!(
            process_args(Some(&config(None, Some(&["x"]))), &empty_args),
            Err(Error::NoCommand)
        ));
    }

    #[test]
    fn env_overrides_win_in_place_and_defaults_fill_gaps() {
        let image = strings(&["A=1", "PATH=/custom", "B=2"]);
        let got = merge_env(&image, &strings(&["B=3", "C=4"]), "h", "/root").unwrap();
        assert_eq!(
            got,
            strings(&[
                "A=1",
                "PATH=/custom",
                "B=3",
                "C=4",
                "HOSTNAME=h",
                "HOME=/root"
            ])
        );
        let got = merge_env(&[], &strings(&["HOME=/x", "HOSTNAME=y"]), "h", "/root").unwrap();
        assert_eq!(
            got,
            strings(&[&format!("PATH={DEFAULT_PATH}"), "HOME=/x", "HOSTNAME=y"])
        );
        let dup = merge_env(&strings(&["A=1", "A=2"]), &[], "h", "/").unwrap();
        assert_eq!(dup[1], "A=2", "later image entries win: {dup:?}");
        for bad in ["NOEQUALS", "=v"] {
            let e = merge_env(&[], &strings(&[bad]), "h", "/").unwrap_err();
            assert!(e.to_string().contains("KEY=VALUE"), "{e}");
        }
    }

    #[test]
    fn working_dir_must_be_absolute_and_defaults_to_root() {
        let mut c = config(None, None);
        assert_eq!(working_dir(Some(&c), &Overrides::default()).unwrap(), "/");
        c.working_dir = Some("/srv".into());
        assert_eq!(
            working_dir(Some(&c), &Overrides::default()).unwrap(),
            "/srv"
        );
        let o = Overrides {
            working_dir: Some("/tmp".into()),
            ..Default::default()
        };
        assert_eq!(working_dir(Some(&c), &o).unwrap(), "/tmp");
        c.working_dir = Some("rel".into());
        let e = working_dir(Some(&c), &Overrides::default()).unwrap_err();
        assert!(
            e.to_string().contains("WorkingDir") && e.to_string().contains("absolute"),
            "{e}"
        );
    }

    #[test]
    fn a_named_network_namespace_is_joined_by_path() {
        let user = ExecUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/root".into(),
            username: None,
        };
        let etc = EtcFiles {
            hosts: "/b/hosts".into(),
            resolv_conf: "/b/resolv.conf".into(),
            hostname: "/b/hostname".into(),
        };
        let ov = Overrides {
            command: Some(strings(&["/bin/sh"])),
            network_namespace: Some("/var/lib/berth/netns/pod-1".into()),
            ..Default::default()
        };
        let spec = build_spec(&SpecInput {
            config: None,
            overrides: &ov,
            rootfs: Path::new("/b/rootfs"),
            user: &user,
            hostname: "pod",
            etc_files: &etc,
            cgroups_path: "/berth/abc",
            cgroup_mode: CgroupMode::Hybrid,
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let net: Vec<&serde_json::Value> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] == "network")
            .collect();
        assert_eq!(
            net,
            [&serde_json::json!({"type": "network", "path": "/var/lib/berth/netns/pod-1"})]
        );
    }

    #[test]
    fn spec_carries_containerd_defaults_and_host_network() {
        let c = ContainerConfig {
            entrypoint: Some(strings(&["/bin/sh"])),
            env: strings(&["FOO=bar"]),
            user: Some("ignored-by-input".into()),
            ..Default::default()
        };
        let user = ExecUser {
            uid: 1000,
            gid: 100,
            additional_gids: vec![10],
            home: "/home/app".into(),
            username: Some("app".into()),
        };
        let etc = EtcFiles {
            hosts: "/b/hosts".into(),
            resolv_conf: "/b/resolv.conf".into(),
            hostname: "/b/hostname".into(),
        };
        let ov = Overrides::default();
        let input = SpecInput {
            config: Some(&c),
            overrides: &ov,
            rootfs: Path::new("/b/rootfs"),
            user: &user,
            hostname: "myhost",
            etc_files: &etc,
            cgroups_path: "/berth/abc",
            cgroup_mode: CgroupMode::Hybrid,
        };
        let spec = build_spec(&input).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["ociVersion"], OCI_VERSION);
        assert_eq!(json["root"]["path"], "/b/rootfs");
        assert_eq!(json["hostname"], "myhost");
        let p = &json["process"];
        assert_eq!(p["terminal"], false);
        assert_eq!(p["noNewPrivileges"], false);
        assert_eq!(p["user"]["uid"], 1000);
        assert_eq!(p["user"]["gid"], 100);
        assert_eq!(p["user"]["additionalGids"], serde_json::json!([10]));
        assert_eq!(p["args"], serde_json::json!(["/bin/sh"]));
        assert_eq!(p["cwd"], "/");
        let env: Vec<&str> = p["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            env.contains(&"FOO=bar")
                && env.contains(&"HOME=/home/app")
                && env.contains(&"HOSTNAME=myhost")
        );
        assert_eq!(
            p["rlimits"],
            serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}])
        );
        let mut bounding: Vec<&str> = p["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        bounding.sort();
        assert_eq!(
            bounding,
            [
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_KILL",
                "CAP_NET_BIND_SERVICE",
                "CAP_SETGID",
                "CAP_SETPCAP",
                "CAP_SETUID"
            ]
        );
        let linux = &json["linux"];
        assert_eq!(linux["cgroupsPath"], "/berth/abc");
        let ns: Vec<&str> = linux["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            ns,
            ["pid", "ipc", "uts", "mount"],
            "host network, no cgroup ns on v1"
        );
        assert_eq!(
            linux["maskedPaths"].as_array().unwrap().len(),
            DEFAULT_MASKED_PATHS.len()
        );
        assert_eq!(linux["readonlyPaths"][3], "/proc/sys");
        assert_eq!(
            linux["resources"]["devices"],
            serde_json::json!([{"allow": false, "access": "rwm"}])
        );
        let dests: Vec<&str> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/run",
                "/sys/fs/cgroup",
                "/etc/hosts",
                "/etc/resolv.conf",
                "/etc/hostname"
            ]
        );
        assert_eq!(json["mounts"][8]["source"], "/b/hosts");
        assert_eq!(json["mounts"][8]["type"], "bind");
        assert_eq!(
            json["mounts"][5]["options"],
            serde_json::json!(["nosuid", "noexec", "nodev", "ro"])
        );

        let unified = SpecInput {
            cgroup_mode: CgroupMode::Unified,
            ..input
        };
        let json = serde_json::to_value(build_spec(&unified).unwrap()).unwrap();
        assert_eq!(json["linux"]["namespaces"][4]["type"], "cgroup");
    }
}
