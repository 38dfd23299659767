//! Connecting to a shadowcast service: the channel (plain or TLS) and the
//! bearer token every call carries. Used by the reference executor, the
//! demo, the tests and the benchmarks.

use std::path::Path;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::proto::executor_client::ExecutorClient;
use super::proto::management_client::ManagementClient;
use super::proto::routing_client::RoutingClient;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("endpoint {endpoint}: {problem}")]
    Endpoint { endpoint: String, problem: String },
    #[error("the token is not valid header text")]
    Token,
}

/// Adds `authorization: Bearer TOKEN` to every call (nothing without a token).
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

/// Clients of the three services over one connection.
#[derive(Clone)]
pub struct Clients {
    pub executor: ExecutorClient<Authed>,
    pub routing: RoutingClient<Authed>,
    pub management: ManagementClient<Authed>,
}

/// Connects to `endpoint` (`http://host:port`, or `https://` with
/// `tls_ca`, the PEM certificate that signed the service's).
pub async fn connect(
    endpoint: &str,
    token: Option<&str>,
    tls_ca: Option<&Path>,
) -> Result<Clients, ConnectError> {
    let failed = |problem: String| ConnectError::Endpoint {
        endpoint: endpoint.to_string(),
        problem,
    };
    let mut builder = Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| failed(e.to_string()))?
        .tcp_nodelay(true);
    if let Some(ca) = tls_ca {
        let pem = std::fs::read(ca).map_err(|e| failed(format!("{}: {e}", ca.display())))?;
        builder = builder
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            .map_err(|e| failed(e.to_string()))?;
    }
    let channel = builder
        .connect()
        .await
        .map_err(|e| failed(format!("cannot connect: {e}")))?;
    let bearer = Bearer(
        token
            .map(|t| format!("Bearer {t}").parse())
            .transpose()
            .map_err(|_| ConnectError::Token)?,
    );
    let limit = 64 << 20;
    Ok(Clients {
        executor: ExecutorClient::with_interceptor(channel.clone(), bearer.clone())
            .max_decoding_message_size(limit),
        routing: RoutingClient::with_interceptor(channel.clone(), bearer.clone())
            .max_decoding_message_size(limit),
        management: ManagementClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(limit),
    })
}
