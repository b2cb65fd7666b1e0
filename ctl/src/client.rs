//! Connecting to dsmild: the Unix socket by default, TCP with --addr.

use anyhow::Context;
use dsmil_proto::control::control_client::ControlClient;
use dsmil_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub struct Clients {
    pub control: ControlClient<Channel>,
    pub inference: GrpcInferenceServiceClient<Channel>,
}

const MAX_MESSAGE_BYTES: usize = 256 << 20;

pub async fn connect(socket: &str, addr: Option<&str>) -> anyhow::Result<Clients> {
    let channel = match addr {
        Some(addr) => {
            let url = if addr.contains("://") {
                addr.to_owned()
            } else {
                format!("http://{addr}")
            };
            Endpoint::from_shared(url.clone())
                .with_context(|| format!("{url} is not an address"))?
                .connect()
                .await
                .with_context(|| format!("cannot reach dsmild at {url}"))?
        }
        None => {
            let path = socket.to_owned();
            // The URI is a placeholder: the connector ignores it and dials the socket.
            Endpoint::from_static("http://dsmild.local")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(&path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await
                .with_context(|| {
                    format!("cannot reach dsmild on {socket} (is it running? --socket or DSMIL_SOCKET picks another)")
                })?
        }
    };
    Ok(Clients {
        control: ControlClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        inference: GrpcInferenceServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    })
}
