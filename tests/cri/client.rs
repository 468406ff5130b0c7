//! The kubelet's side of CRI, blocking: pods and containers through RunPodSandbox,
//! CreateContainer and StartContainer, their output read back from the CRI log files.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use migcage_cri_api::tonic;
use migcage_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use migcage_cri_api::v1::*;
use tonic::transport::Channel;

use crate::common::Run;

pub struct Cri {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
    logs: PathBuf,
}

/// A pod as the kubelet describes it: its name, annotations and runtime handler.
pub struct PodSpec<'a> {
    pub name: &'a str,
    pub annotations: &'a [(&'a str, &'a str)],
    pub handler: &'a str,
    /// Every container of the pod is under this cgroup (cgroupfs), for the test's cleanup.
    pub cgroup_parent: &'a str,
}

/// One container of a pod: what the device plugin's Allocate answer put in it.
#[derive(Default)]
pub struct ContainerSpec<'a> {
    pub name: &'a str,
    pub envs: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    /// (host path, container path), read-only.
    pub mounts: Vec<(PathBuf, String)>,
    /// Fully qualified CDI device names (CRI's `CDI_devices`, KEP-4009), for the runtime to
    /// inject from its CDI spec directories.
    pub cdi_devices: Vec<String>,
}

pub struct Pod {
    pub id: String,
    config: PodSandboxConfig,
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Cri {
    pub fn connect(socket: &Path, logs: &Path) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = rt
            .block_on(migcage_cri_api::connect(socket))
            .unwrap_or_else(|e| panic!("CRI socket {}: {e}", socket.display()));
        Cri {
            rt,
            client: RuntimeServiceClient::new(channel),
            logs: logs.to_path_buf(),
        }
    }

    pub fn version(&mut self) -> String {
        let r = self
            .rt
            .block_on(self.client.version(VersionRequest::default()))
            .unwrap()
            .into_inner();
        format!("{} {}", r.runtime_name, r.runtime_version)
    }

    /// RunPodSandbox: a pod in the node's network namespace (no CNI here).
    pub fn run_pod(&mut self, spec: &PodSpec) -> Result<Pod, tonic::Status> {
        let log_directory = self.logs.join(spec.name);
        std::fs::create_dir_all(&log_directory).unwrap();
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: spec.name.into(),
                uid: format!("uid-{}", spec.name),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: log_directory.display().to_string(),
            annotations: map(spec.annotations),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: spec.cgroup_parent.into(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = self
            .rt
            .block_on(self.client.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: spec.handler.into(),
            }))?;
        Ok(Pod {
            id: r.into_inner().pod_sandbox_id,
            config,
        })
    }

    /// CreateContainer and StartContainer of `image` running `sh -c script`.
    pub fn start(
        &mut self,
        pod: &Pod,
        image: &str,
        c: &ContainerSpec,
        script: &str,
    ) -> Result<String, tonic::Status> {
        let kv = |v: &[(String, String)]| -> Vec<KeyValue> {
            v.iter()
                .map(|(key, value)| KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect()
        };
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: c.name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command: vec!["sh".into(), "-c".into(), script.into()],
            envs: kv(&c.envs),
            annotations: c.annotations.iter().cloned().collect(),
            mounts: c
                .mounts
                .iter()
                .map(|(host, container)| Mount {
                    host_path: host.display().to_string(),
                    container_path: container.clone(),
                    readonly: true,
                    ..Default::default()
                })
                .collect(),
            log_path: format!("{}.log", c.name),
            cdi_devices: c
                .cdi_devices
                .iter()
                .map(|name| CdiDevice { name: name.clone() })
                .collect(),
            ..Default::default()
        };
        let id = self
            .rt
            .block_on(self.client.create_container(CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            }))?
            .into_inner()
            .container_id;
        self.rt
            .block_on(self.client.start_container(StartContainerRequest {
                container_id: id.clone(),
            }))?;
        Ok(id)
    }

    /// Wait for container `id` of `pod` to exit; its exit code and output (from the CRI log).
    pub fn wait(&mut self, pod: &Pod, name: &str, id: &str) -> Run {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            let s = self
                .rt
                .block_on(self.client.container_status(ContainerStatusRequest {
                    container_id: id.into(),
                    verbose: false,
                }))
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            if s.state == ContainerState::ContainerExited as i32 || Instant::now() > deadline {
                break s;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            status.state,
            ContainerState::ContainerExited as i32,
            "container {name} did not exit in 60 s"
        );
        let log = Path::new(&pod.config.log_directory).join(format!("{name}.log"));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let (mut stdout, mut stderr) = (String::new(), String::new());
        // CRI log lines: `<time> <stream> <P|F> <text>`.
        for line in text.lines() {
            let mut parts = line.splitn(4, ' ');
            let (_, stream, _, content) = (parts.next(), parts.next(), parts.next(), parts.next());
            let out = if stream == Some("stderr") {
                &mut stderr
            } else {
                &mut stdout
            };
            out.push_str(content.unwrap_or_default());
            out.push('\n');
        }
        Run {
            id: id.into(),
            output: std::process::Output {
                status: std::process::ExitStatus::from_raw(status.exit_code << 8),
                stdout: stdout.into_bytes(),
                stderr: stderr.into_bytes(),
            },
        }
    }

    /// StopPodSandbox and RemovePodSandbox (its containers go with it).
    pub fn remove_pod(&mut self, pod: &Pod) {
        let id = pod.id.clone();
        self.rt
            .block_on(self.client.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }))
            .unwrap_or_else(|e| panic!("StopPodSandbox {id}: {e}"));
        self.rt
            .block_on(self.client.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }))
            .unwrap_or_else(|e| panic!("RemovePodSandbox {id}: {e}"));
    }
}
