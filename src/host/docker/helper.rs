//! OpsGuard's short-lived helper containers: how a command reaches the
//! files of a container that cannot `exec` (it is stopped).
//!
//! A helper runs from the container's own image with `volumes_from` the
//! target (the same volumes and binds, read-only when asked), no network,
//! labelled with the scope label, `opsguard.role=helper` and
//! `opsguard.prune=true` (one left behind, say by a crash of OpsGuard, is
//! then a zombie the next prune removes), and is removed afterwards
//! whatever happened.

use std::collections::HashMap;

use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
};
use futures_util::StreamExt;

use super::{CommandOutput, DockerHost, map_error, timed};
use crate::host::{HostError, HostErrorKind, PRUNE_LABEL, is_under};

/// The label key marking what a container is for (`helper`, `zombie`, …).
pub const ROLE_LABEL: &str = "opsguard.role";
/// The role value of OpsGuard's own short-lived helper containers.
pub const HELPER_ROLE: &str = "helper";

impl DockerHost {
    /// Runs `cmd` in a short-lived helper container from `image` that mounts
    /// the volumes and binds of `volumes_from` (read-only when `read_only`),
    /// with no network, labelled with the scope label,
    /// `opsguard.role=helper` and `opsguard.prune=true`; removes it
    /// afterwards.
    pub async fn run_helper(
        &self,
        image: &str,
        volumes_from: Option<&str>,
        read_only: bool,
        cmd: &[&str],
        extra_labels: &[(&str, &str)],
    ) -> Result<CommandOutput, HostError> {
        let op = format!("helper for {}", volumes_from.unwrap_or(image));
        let mut labels = HashMap::new();
        if let Some((k, v)) = self.scope_label.split_once('=') {
            labels.insert(k.to_string(), v.to_string());
        } else {
            labels.insert(self.scope_label.clone(), String::new());
        }
        labels.insert(ROLE_LABEL.to_string(), HELPER_ROLE.to_string());
        if let Some((k, v)) = PRUNE_LABEL.split_once('=') {
            labels.insert(k.to_string(), v.to_string());
        }
        for (k, v) in extra_labels {
            labels.insert(k.to_string(), v.to_string());
        }
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(vec![]),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            labels: Some(labels),
            user: Some("root".into()),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                volumes_from: volumes_from.map(|v| vec![format!("{v}:{}", if read_only { "ro" } else { "rw" })]),
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!(
            "opsguard-helper-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() % 1_000_000_000)
        );
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = timed(&op, self.timeouts.call, self.docker.create_container(Some(options), body)).await?;
        let id = created.id;
        let result = tokio::time::timeout(self.timeouts.command, self.helper_body(&op, &id)).await;
        // Remove whatever happened; a failure here leaves an exited, labelled
        // helper that the next prune takes away.
        let rm = RemoveContainerOptionsBuilder::default().force(true).v(false).build();
        if let Err(e) = timed(&op, self.timeouts.call, self.docker.remove_container(&id, Some(rm))).await {
            eprintln!("opsguard: could not remove helper {name}: {e}");
        }
        match result {
            Ok(r) => r,
            Err(_) => Err(HostError::new(HostErrorKind::Timeout, op, "helper did not finish in time")),
        }
    }

    async fn helper_body(&self, op: &str, id: &str) -> Result<CommandOutput, HostError> {
        self.docker.start_container(id, None::<StartContainerOptions>).await.map_err(|e| map_error(op, e))?;
        let mut wait = self.docker.wait_container(id, None);
        let mut exit_code = -1;
        while let Some(r) = wait.next().await {
            match r {
                Ok(w) => exit_code = w.status_code,
                Err(DockerError::DockerContainerWaitError { code, .. }) => exit_code = code,
                Err(e) => return Err(map_error(op, e)),
            }
        }
        let opts = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
        let mut logs = self.docker.logs(id, Some(opts));
        let mut out = CommandOutput { exit_code, ..Default::default() };
        while let Some(chunk) = logs.next().await {
            match chunk.map_err(|e| map_error(op, e))? {
                bollard::container::LogOutput::StdErr { message } => {
                    out.stderr.push_str(&String::from_utf8_lossy(&message))
                }
                other => out.stdout.push_str(&String::from_utf8_lossy(other.as_ref())),
            }
        }
        Ok(out)
    }

    /// Runs `cmd` where it can see `container`'s files: `exec` when it runs,
    /// a helper mounting its volumes otherwise.
    pub async fn run_beside(
        &self,
        container: &str,
        info: &ContainerInspectResponse,
        read_only: bool,
        cmd: &[&str],
    ) -> Result<CommandOutput, HostError> {
        let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if running {
            match self.exec(container, cmd).await {
                Err(e) if e.kind == HostErrorKind::Conflict => {} // stopped meanwhile
                other => return other,
            }
        }
        let image = info
            .image
            .clone()
            .ok_or_else(|| HostError::new(HostErrorKind::BadResponse, "helper", "container has no image"))?;
        let id = info.id.clone().unwrap_or_else(|| container.to_string());
        self.run_helper(&image, Some(&id), read_only, cmd, &[("opsguard.helper-for", container)]).await
    }

    /// The mount destinations of the container.
    pub(super) fn mounts(info: &ContainerInspectResponse) -> Vec<String> {
        info.mounts.iter().flatten().filter_map(|m| m.destination.clone()).collect()
    }

    /// Whether `path` lives on one of the container's mounts (so that a
    /// helper sees the same files).
    pub(super) fn on_a_mount(info: &ContainerInspectResponse, path: &str) -> bool {
        Self::mounts(info).iter().any(|m| path == m || is_under(path, m))
    }
}
