//! Lease-based leader election on etcd (etcd's v3election service, as `etcdctl elect` uses), so
//! that exactly one controller manager and one scheduler act at a time across API servers. It
//! owns the lease, its renewal, the campaign and the "leadership lost" signal; it must never
//! let a holder believe it leads after its lease could have expired on the server: leadership
//! is declared lost when no renewal has succeeded for two thirds of the TTL, before etcd can
//! expire the lease and elect someone else.

use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, LeaderKey, ResignOptions, SortOrder, SortTarget};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{EtcdError, EtcdStore};

/// The etcd key under which elections live, below the store's key prefix (outside `/registry/`).
const ELECTIONS: &str = "/berth/elections/";

/// Held leadership of one election. Dropping it stops renewing the lease (etcd then elects
/// another candidate after the TTL); [`Leadership::resign`] hands over at once.
pub struct Leadership {
    name: String,
    url: String,
    client: Client,
    leader: LeaderKey,
    lease: i64,
    lost: watch::Receiver<bool>,
    renewer: AbortOnDrop,
}

/// Stops the lease renewer when the campaign future or the [`Leadership`] is dropped, so an
/// abandoned candidate never keeps its lease (and so its place in the queue) alive.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("name", &self.name)
            .field("lease", &format_args!("{:x}", self.lease))
            .field("held", &self.is_held())
            .finish()
    }
}

impl Leadership {
    /// True until the lease could not be renewed (or was revoked).
    pub fn is_held(&self) -> bool {
        !*self.lost.borrow()
    }

    /// Resolves once leadership is lost; the holder must stop acting immediately.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        // An error means the renewer ended, which it only does after marking the loss.
        let _ = lost.wait_for(|lost| *lost).await;
    }

    /// The etcd key that holds this leadership (`<prefix>/berth/elections/<name>/<lease>`).
    pub fn key(&self) -> String {
        String::from_utf8_lossy(self.leader.key()).into_owned()
    }

    /// Gives leadership up now: deletes the leader key and revokes the lease.
    pub async fn resign(mut self) -> Result<(), EtcdError> {
        self.renewer.0.abort();
        let failed = |e: etcd_client::Error| EtcdError::Election {
            name: self.name.clone(),
            url: self.url.clone(),
            reason: format!("resign: {}", crate::error::describe(&e)),
        };
        self.client
            .resign(Some(ResignOptions::new().with_leader(self.leader.clone())))
            .await
            .map_err(failed)?;
        self.client.lease_revoke(self.lease).await.map_err(failed)?;
        Ok(())
    }
}

impl EtcdStore {
    /// Campaigns in election `name` as `identity` (for example the host name and process id)
    /// with a lease of `ttl` (at least 2 s), waiting until this candidate leads. Cancel the
    /// future to stop campaigning; the lease then expires after `ttl`.
    pub async fn elect(
        &self,
        name: &str,
        identity: &str,
        ttl: Duration,
    ) -> Result<Leadership, EtcdError> {
        let never = std::future::pending::<()>();
        let leadership = self.elect_until(name, identity, ttl, never).await?;
        Ok(leadership.expect("a campaign without a stop signal only ends by leading or failing"))
    }

    /// [`EtcdStore::elect`] until `stop` resolves: then the campaign ends with `Ok(None)` and its
    /// lease is revoked at once, so this candidate leaves the election (and
    /// [`EtcdStore::candidates`]) immediately rather than after `ttl`.
    pub async fn elect_until(
        &self,
        name: &str,
        identity: &str,
        ttl: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Option<Leadership>, EtcdError> {
        let url = self.inner.url.clone();
        let failed = |what: &str, reason: String| EtcdError::Election {
            name: name.to_owned(),
            url: url.clone(),
            reason: format!("{what}: {reason}"),
        };
        if name.is_empty() || name.contains('/') {
            return Err(failed(
                "invalid name",
                "use a non-empty name without '/', such as kube-controller-manager".into(),
            ));
        }
        let ttl = ttl.max(Duration::from_secs(2));
        let mut client = self.client();
        let lease = client
            .lease_grant(ttl.as_secs() as i64, None)
            .await
            .map_err(|e| failed("grant lease", crate::error::describe(&e)))?
            .id();
        let (lost_tx, lost_rx) = watch::channel(false);
        let renewer = AbortOnDrop(tokio::spawn(renew(
            client.clone(),
            lease,
            ttl,
            lost_tx,
            url.clone(),
        )));
        let election_key = format!("{}{ELECTIONS}{name}", self.inner.config.key_prefix);
        let mut lost = lost_rx.clone();
        let campaign = client.campaign(election_key, identity, lease);
        let response = tokio::select! {
            r = campaign => Some(r),
            _ = lost.wait_for(|l| *l) => {
                return Err(failed("campaign", "the lease could not be renewed while waiting to lead".into()));
            }
            _ = stop => None,
        };
        let Some(response) = response else {
            drop(renewer);
            if let Err(e) = client.lease_revoke(lease).await {
                tracing::debug!(election = %name, error = %crate::error::describe(&e), "could not revoke an abandoned campaign's lease; it expires after its ttl");
            }
            return Ok(None);
        };
        let leader = match response {
            Ok(mut r) => r.take_leader(),
            Err(e) => {
                drop(renewer);
                let _ = client.lease_revoke(lease).await;
                return Err(failed("campaign", crate::error::describe(&e)));
            }
        };
        let Some(leader) = leader else {
            return Err(failed("campaign", "etcd returned no leader key".into()));
        };
        tracing::info!(election = %name, %identity, key = %String::from_utf8_lossy(leader.key()), "became leader");
        Ok(Some(Leadership {
            name: name.to_owned(),
            url,
            client,
            leader,
            lease,
            lost: lost_rx,
            renewer,
        }))
    }
}

impl EtcdStore {
    /// The identities of every live candidate of election `name`, the leader first, then in
    /// campaign order. Each candidate's key lives only as long as its lease, so this names the
    /// processes that currently take part (a process killed without resigning stays listed until
    /// its lease's TTL has passed).
    pub async fn candidates(&self, name: &str) -> Result<Vec<String>, EtcdError> {
        let prefix = format!("{}{ELECTIONS}{name}/", self.inner.config.key_prefix);
        let response = self
            .client()
            .get(
                prefix,
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Create, SortOrder::Ascend),
                ),
            )
            .await
            .map_err(|e| EtcdError::Election {
                name: name.to_owned(),
                url: self.inner.url.clone(),
                reason: format!("list candidates: {}", crate::error::describe(&e)),
            })?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            .collect())
    }
}

/// Renews `lease` every third of `ttl`; marks leadership lost when no renewal succeeded for two
/// thirds of `ttl` or etcd says the lease is gone.
async fn renew(
    mut client: Client,
    lease: i64,
    ttl: Duration,
    lost: watch::Sender<bool>,
    url: String,
) {
    let interval = ttl / 3;
    let deadline_after = ttl * 2 / 3;
    let mut last_ok = Instant::now();
    let mut stream = None;
    loop {
        if last_ok.elapsed() >= deadline_after {
            tracing::warn!(%url, lease = %format_args!("{lease:x}"), "lease not renewed in time; leadership lost");
            let _ = lost.send(true);
            return;
        }
        let sent_at = Instant::now();
        let left = deadline_after.saturating_sub(last_ok.elapsed());
        let attempt = async {
            if stream.is_none() {
                stream = Some(client.lease_keep_alive(lease).await?);
            }
            let (keeper, responses) = stream.as_mut().expect("just opened");
            keeper.keep_alive().await?;
            responses.message().await
        };
        match tokio::time::timeout(left, attempt).await {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                last_ok = sent_at;
                tokio::time::sleep(interval.saturating_sub(sent_at.elapsed())).await;
            }
            Ok(Ok(Some(_))) => {
                tracing::warn!(%url, lease = %format_args!("{lease:x}"), "lease expired or revoked; leadership lost");
                let _ = lost.send(true);
                return;
            }
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                stream = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
