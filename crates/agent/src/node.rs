//! The agent's Node object: registration (labels `kubernetes.io/hostname|os|arch`, the serving certificate
//! fingerprint annotation) and the status kubelet posts (addresses, `daemonEndpoints.kubeletEndpoint.Port`,
//! `nodeInfo`, capacity and allocatable, the Ready condition `KubeletReady` / `kubelet is posting ready status`
//! with the pressure conditions beside it), re-posted every heartbeat with a fresh `lastHeartbeatTime`. It must
//! never touch another Node.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::AgentError;
use crate::pods::Agent;
use crate::status::now_rfc3339;
use crate::{AgentConfig, KUBELET_VERSION, SERVING_CERT_ANNOTATION};

/// Go's `GOARCH` for this build.
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "arm" => "arm",
        other => other,
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn memory_ki() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Posts the Node and its heartbeat.
pub(crate) struct NodeReporter {
    api: Api<Node>,
    name: String,
    ip: String,
    port: u16,
    fingerprint: String,
    heartbeat: Duration,
    runtime_version: String,
    ready_since: String,
}

impl NodeReporter {
    pub fn new(
        config: &AgentConfig,
        bound: SocketAddr,
        fingerprint: String,
        agent: &Agent,
    ) -> Result<Self, AgentError> {
        let info = agent.runtime_info()?;
        let version = info
            .runc_version
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("runc version")
            .trim()
            .to_string();
        Ok(NodeReporter {
            api: Api::all(config.client.clone()),
            name: config.node_name.clone(),
            ip: agent.host_ip().to_string(),
            port: bound.port(),
            fingerprint,
            heartbeat: config.heartbeat,
            runtime_version: format!("runc://{version}"),
            ready_since: now_rfc3339(),
        })
    }

    fn metadata(&self) -> Value {
        json!({
            "name": self.name,
            "labels": {
                "kubernetes.io/hostname": self.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": go_arch(),
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": go_arch(),
            },
            "annotations": {SERVING_CERT_ANNOTATION: self.fingerprint},
        })
    }

    fn status(&self) -> Value {
        let now = now_rfc3339();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let resources = json!({
            "cpu": cpus.to_string(),
            "memory": format!("{}Ki", memory_ki()),
            "pods": "110",
        });
        let cond = |kind: &str, status: &str, reason: &str, message: &str| {
            json!({
                "type": kind,
                "status": status,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self.ready_since,
                "reason": reason,
                "message": message,
            })
        };
        json!({
            "addresses": [
                {"type": "InternalIP", "address": self.ip},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "nodeInfo": {
                "machineID": read_trimmed("/etc/machine-id"),
                "systemUUID": read_trimmed("/sys/class/dmi/id/product_uuid"),
                "bootID": read_trimmed("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": read_trimmed("/proc/sys/kernel/osrelease"),
                "osImage": os_image(),
                "containerRuntimeVersion": self.runtime_version,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": go_arch(),
            },
        })
    }

    /// Create the Node or update our fields on an existing one, then post the status.
    pub async fn register(&self) -> Result<(), AgentError> {
        let existing = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| AgentError::api(format!("reading Node {}", self.name), e))?;
        match existing {
            None => {
                let node: Node = serde_json::from_value(json!({
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": self.metadata(),
                }))
                .expect("node object");
                match self.api.create(&PostParams::default(), &node).await {
                    Ok(_) => {}
                    // Another start of this agent raced us: fall through to the update.
                    Err(kube::Error::Api(s)) if s.code == 409 => self.patch_metadata().await?,
                    Err(e) => {
                        return Err(AgentError::api(
                            format!("registering Node {}", self.name),
                            e,
                        ));
                    }
                }
                tracing::info!(node = %self.name, "node registered");
            }
            Some(_) => self.patch_metadata().await?,
        }
        self.post_status()
            .await
            .map_err(|e| AgentError::api(format!("posting the status of Node {}", self.name), e))
    }

    async fn patch_metadata(&self) -> Result<(), AgentError> {
        let patch = json!({"metadata": self.metadata()});
        self.api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| AgentError::api(format!("updating Node {}", self.name), e))
    }

    async fn post_status(&self) -> Result<(), kube::Error> {
        let patch = json!({"status": self.status()});
        self.api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    /// Post the status every heartbeat until `shutdown`; a deleted Node is registered again.
    pub async fn heartbeat_loop(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.heartbeat) => {}
            }
            match self.post_status().await {
                Ok(()) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    tracing::warn!(node = %self.name, "the Node was deleted; registering it again");
                    if let Err(e) = self.register().await {
                        tracing::warn!(error = %e, "registering the Node again failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %self.name, error = %e, "posting the node status failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_follow_go() {
        let a = go_arch();
        assert!(!a.is_empty());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(a, "amd64");
        }
    }
}
