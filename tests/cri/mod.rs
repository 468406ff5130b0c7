//! Kubernetes' path to migcage: a private containerd's CRI plugin, driven as the kubelet
//! drives it (tests/cri_e2e.rs).

pub mod client;
pub mod daemon;
pub mod image;
pub mod pod;
