//! The Kubernetes CRI API (`runtime.v1`) as a tonic client over a unix socket, for the tests
//! that drive containerd's CRI plugin the way the kubelet does.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
pub use tonic;
use tonic::transport::{Channel, Endpoint};

/// The generated messages and clients (`runtime_service_client`, `image_service_client`).
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("runtime.v1");
}

/// A channel to the CRI server listening on the unix socket `socket`.
pub async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket: PathBuf = socket.to_path_buf();
    // The URI is required by the API and unused: the connector dials the socket.
    Endpoint::from_static("http://[::]:0")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
}
