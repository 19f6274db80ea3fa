//! `berth migrate --from sqlite://<data-dir> --to etcd://HOST:PORT[,...]` and the datastore flags `berth server`
//! shares with it (`--datastore`, `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`): argument parsing and
//! printing only. The copy itself (stored bytes, Secrets still encrypted, resumable, refusing a non-empty target)
//! lives in `apiserver::migrate_sqlite_to_etcd`; this module must never read or write a store itself.

use std::path::PathBuf;

use anyhow::Context;

/// TLS files for `etcds://` datastores.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EtcdTlsArgs {
    /// PEM bundle of the CAs that sign the etcd members' serving certificates (etcds:// only)
    #[arg(long, value_name = "FILE")]
    pub etcd_cafile: Option<PathBuf>,
    /// PEM client certificate presented to etcd (members started with --client-cert-auth)
    #[arg(long, value_name = "FILE", requires = "etcd_keyfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// PEM private key of --etcd-certfile
    #[arg(long, value_name = "FILE", requires = "etcd_certfile")]
    pub etcd_keyfile: Option<PathBuf>,
}

impl EtcdTlsArgs {
    fn any(&self) -> bool {
        self.etcd_cafile.is_some() || self.etcd_certfile.is_some() || self.etcd_keyfile.is_some()
    }

    /// The etcd configuration of `url` (`etcd://` or `etcds://`) with these TLS files.
    pub fn etcd_config(&self, url: &str) -> anyhow::Result<apiserver::EtcdConfig> {
        let config = apiserver::EtcdConfig::from_url(url)?;
        if config.tls.is_none() {
            anyhow::ensure!(
                !self.any(),
                "--etcd-cafile, --etcd-certfile and --etcd-keyfile need a TLS datastore url: write etcds:// instead of etcd:// in {url}"
            );
            return Ok(config);
        }
        let ca_file = self.etcd_cafile.clone().with_context(|| {
            format!("{url} uses TLS: pass --etcd-cafile with the CA that signs the etcd members' certificates")
        })?;
        Ok(config.with_tls(apiserver::EtcdTls {
            ca_file,
            cert_file: self.etcd_certfile.clone(),
            key_file: self.etcd_keyfile.clone(),
        }))
    }

    /// The datastore of `berth server --datastore URL` (absent or `sqlite://`: SQLite in the data dir).
    pub fn datastore(&self, url: Option<&str>) -> anyhow::Result<apiserver::Datastore> {
        match url {
            None | Some("sqlite://") => {
                anyhow::ensure!(
                    !self.any(),
                    "--etcd-cafile, --etcd-certfile and --etcd-keyfile apply to --datastore etcds://... only"
                );
                Ok(apiserver::Datastore::Sqlite)
            }
            Some(url) if url.starts_with("etcd://") || url.starts_with("etcds://") => {
                Ok(apiserver::Datastore::Etcd(self.etcd_config(url)?))
            }
            Some(url) => anyhow::bail!(
                "unsupported --datastore {url:?}: use etcd://HOST:PORT[,HOST:PORT...], etcds://... with --etcd-cafile, \
                 or sqlite:// (the default: state.db in --data-dir)"
            ),
        }
    }
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The source: sqlite://<data-dir> of a stopped `berth server` (its state.db, encryption.key and pki/)
    #[arg(long, value_name = "URL")]
    from: String,
    /// The target: etcd://HOST:PORT[,HOST:PORT...] or etcds://... with the --etcd-* files
    #[arg(long, value_name = "URL")]
    to: String,
    /// Copy even when the target already holds objects (objects with the same keys are overwritten)
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    tls: EtcdTlsArgs,
}

/// `berth migrate`.
pub async fn run(args: MigrateArgs) -> anyhow::Result<i32> {
    let data_dir = args
        .from
        .strip_prefix("sqlite://")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .with_context(|| {
            format!(
                "unsupported --from {:?}: write sqlite://<data-dir> (the --data-dir of the stopped berth server)",
                args.from
            )
        })?;
    anyhow::ensure!(
        data_dir.join("state.db").is_file(),
        "{} has no state.db: --from must name the --data-dir of a berth server that ran on SQLite",
        data_dir.display()
    );
    let target = args.tls.etcd_config(&args.to)?;
    let report = apiserver::migrate_sqlite_to_etcd(&data_dir, target, args.force)
        .await
        .with_context(|| format!("migrating {} to {}", args.from, args.to))?;
    for (resource, n) in &report.per_resource {
        println!("{resource:<40} {n}");
    }
    println!(
        "migrated {} object(s) to {}: {} created, {} already present, {} replaced; {} secret(s) verified with {}",
        report.created + report.unchanged + report.replaced,
        report.target,
        report.created,
        report.unchanged,
        report.replaced,
        report.secrets_verified,
        data_dir.join("encryption.key").display()
    );
    println!(
        "start the API servers with --datastore {} and a copy of {} as --data-dir (encryption.key, pki/ and tokens)",
        args.to,
        data_dir.display()
    );
    Ok(0)
}
