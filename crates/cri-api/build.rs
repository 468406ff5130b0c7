//! Generate the CRI client from proto/api.proto (kubernetes/cri-api's `runtime.v1`, as k8s-cri
//! 0.11 ships it) without protoc: protox parses it into a descriptor set for tonic-prost-build.

fn main() {
    let proto = "proto/api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"]).expect("parse the CRI proto");
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)
        .expect("generate the CRI client");
}
