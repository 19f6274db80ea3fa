//! From a committed image to layer snapshots. It owns reading an image back out of the content
//! store (record -> manifest -> config and layers, each read under the oci size limits) and the
//! hand-off of an image to the `unpack` snapshotter on the blocking pool, with the image as the
//! snapshots' user (`image:<name>`) so a snapshot gc can never remove what the image still needs.
//! It must never apply a layer itself (that is `unpack`) and never read a blob that is not
//! committed and verified (everything goes through `content::Store`).

use std::sync::{Arc, mpsc};

use oci::{Descriptor, ImageConfig, Manifest};
use unpack::{Limits, SnapshotId, Snapshotter};

use crate::error::PullError;

/// An image as recorded in the local store.
#[derive(Clone, Debug)]
pub struct StoredImage {
    /// The image record's name (normalised reference with its tag or digest).
    pub name: String,
    /// What the reference resolved to when it was pulled (index or manifest).
    pub target: Descriptor,
    /// The platform's image manifest.
    pub manifest: Descriptor,
    /// The image config descriptor.
    pub config: Descriptor,
    /// The parsed image config.
    pub image_config: ImageConfig,
    /// The layers, in order (bottom-most first).
    pub layers: Vec<Descriptor>,
}

/// The snapshot user recorded for an image: `image:<name>`.
pub fn image_user(name: &str) -> String {
    format!("image:{name}")
}

/// Reads image `name` (a normalised reference, as `Pulled::name`) back from the store: `None`
/// when there is no record; an error when the record exists but a document is missing or
/// invalid. Blocking (reads files).
pub fn load_stored_image(
    store: &content::Store,
    name: &str,
) -> Result<Option<StoredImage>, PullError> {
    let Some(record) = store.get_image(name)? else {
        return Ok(None);
    };
    let local = |reason: String| PullError::Local {
        image: name.to_string(),
        reason,
    };
    let manifest_desc = match &record.manifest {
        None => record.target.clone(),
        Some(digest) => {
            let index = read_manifest(store, &record.target).map_err(local)?;
            let Manifest::Index(index) = index else {
                return Err(local(format!(
                    "the record names manifest {digest} but its target {} is not an index",
                    record.target.digest
                )));
            };
            index
                .manifests
                .iter()
                .find(|d| &d.digest == digest)
                .cloned()
                .ok_or_else(|| {
                    local(format!(
                        "index {} does not list the recorded manifest {digest}",
                        record.target.digest
                    ))
                })?
        }
    };
    let Manifest::Image(manifest) = read_manifest(store, &manifest_desc).map_err(local)? else {
        return Err(local(format!(
            "{} is an index, not an image manifest",
            manifest_desc.digest
        )));
    };
    let bytes = store.read_blob(
        &manifest.config.digest,
        oci::manifest::MAX_CONFIG_BYTES as u64,
    )?;
    let image_config = oci::parse_config(&bytes)
        .map_err(|e| local(format!("config {}: {e}", manifest.config.digest)))?;
    Ok(Some(StoredImage {
        name: record.name,
        target: record.target,
        manifest: manifest_desc,
        config: manifest.config.clone(),
        image_config,
        layers: manifest.layers.clone(),
    }))
}

fn read_manifest(store: &content::Store, desc: &Descriptor) -> Result<Manifest, String> {
    let bytes = store
        .read_blob(&desc.digest, oci::manifest::MAX_MANIFEST_BYTES as u64)
        .map_err(|e| e.to_string())?;
    oci::parse_manifest(Some(&desc.media_type), &bytes)
        .map_err(|e| format!("manifest {}: {e}", desc.digest))
}

/// Unpacks `layers` of image `name` (config at `config`) on the blocking pool, recording
/// `image:<name>` on every snapshot of the chain. Complete snapshots are skipped. Returns the
/// chain, bottom-most first.
pub async fn unpack_stored(
    snapshotter: Arc<Snapshotter>,
    store: content::Store,
    name: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
) -> Result<Vec<SnapshotId>, PullError> {
    let (tx, ready) = mpsc::channel();
    for i in 0..layers.len() {
        let _ = tx.send(i);
    }
    drop(tx);
    spawn_unpack(snapshotter, store, name, config, layers, ready)
        .await
        .map_err(|e| PullError::Internal(format!("unpack task: {e}")))?
}

/// Starts unpacking `layers` of image `name` on the blocking pool while the pull may still be
/// downloading them: the config (at `config`) must be committed; each layer is read from the
/// store only after its index arrives on `ready`, which the puller sends once that blob is
/// committed and verified. Closing `ready` early makes the task finish the layers it has and
/// fail with the first layer that never arrived.
pub(crate) fn spawn_unpack(
    snapshotter: Arc<Snapshotter>,
    store: content::Store,
    name: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
    ready: mpsc::Receiver<usize>,
) -> tokio::task::JoinHandle<Result<Vec<SnapshotId>, PullError>> {
    tokio::task::spawn_blocking(move || -> Result<Vec<SnapshotId>, PullError> {
        let bytes = store.read_blob(&config.digest, oci::manifest::MAX_CONFIG_BYTES as u64)?;
        let image_config = oci::parse_config(&bytes).map_err(|e| PullError::Local {
            image: name.clone(),
            reason: format!("config {}: {e}", config.digest),
        })?;
        let started = std::time::Instant::now();
        let chain = snapshotter
            .unpack_image_as_ready(
                &store,
                &image_config,
                &layers,
                &Limits::default(),
                &image_user(&name),
                ready,
            )
            .map_err(|error| PullError::Unpack {
                image: name.clone(),
                layer: error.layer().cloned(),
                error: Box::new(error),
            })?;
        tracing::debug!(image = %name, layers = layers.len(), elapsed = ?started.elapsed(), "unpacked");
        Ok(chain)
    })
}
