//! A simulated NVML (work in progress).
