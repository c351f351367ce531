//! Connections and framing: opening a connection (TCP, TLS, `ApiVersions`, then SASL), encoding
//! a request frame, one round trip, and picking the version of an API both sides speak.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::error::{check, code};
use super::request::WireRequest;
use super::{WireClient, WireError, lock};

/// Largest response frame accepted; anything bigger means the stream is out of step.
const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;
/// The `ApiVersions` version asked first: v3 carries the client name and the finalized features.
pub(super) const API_VERSIONS_VERSION: i16 = 3;
/// Name this client reports in `ApiVersions` (Kafka only allows `[a-zA-Z0-9.-]`).
pub(super) const CLIENT_SOFTWARE_NAME: &str = "exactly-wire";

/// A byte stream to a broker: plain TCP or TLS over it.
pub(super) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// An open connection and what its broker said about itself.
pub(super) struct Connection {
    pub(super) stream: Box<dyn Io>,
    /// Supported versions per API key.
    versions: HashMap<i16, (i16, i16)>,
}

/// One connection slot per broker address; `None` until used or after a failure.
pub(super) type Slot = Arc<Mutex<Option<Connection>>>;

impl WireClient {
    pub(super) fn slot(&self, address: &str) -> Slot {
        lock(&self.connections)
            .entry(address.to_string())
            .or_default()
            .clone()
    }

    pub(super) fn unreachable(address: &str, message: impl fmt::Display) -> WireError {
        WireError::Unreachable {
            address: address.to_string(),
            message: message.to_string(),
        }
    }

    /// Encodes a request frame (size, header, body) for `version`.
    pub(super) fn encode_frame<R: WireRequest>(
        &self,
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes, WireError> {
        if let Some(count) = &self.on_request {
            count(&format!("{:?}", R::KEY));
        }
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        let encoded = header
            .encode(&mut buf, R::header_version(version))
            .and_then(|()| request.encode(&mut buf, version));
        if let Err(e) = encoded {
            return Err(WireError::Protocol(format!(
                "encoding {:?} v{version}: {e:#}",
                R::KEY
            )));
        }
        let size = i32::try_from(buf.len() - 4)
            .map_err(|_| WireError::protocol(format!("{:?} request too large", R::KEY)))?;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok(buf.freeze())
    }

    /// Writes one frame and reads the answer with the same correlation id; returns the response
    /// body (after the header). Any error leaves the stream unusable.
    pub(super) async fn round_trip(
        stream: &mut dyn Io,
        address: &str,
        frame: &[u8],
        correlation_id: i32,
        response_header_version: i16,
    ) -> Result<Bytes, WireError> {
        stream
            .write_all(frame)
            .await
            .map_err(|e| Self::unreachable(address, format!("write: {e}")))?;
        let size = stream
            .read_i32()
            .await
            .map_err(|e| Self::unreachable(address, format!("read: {e}")))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&size| size <= MAX_FRAME_BYTES)
            .ok_or_else(|| WireError::protocol(format!("response frame of {size} bytes")))?;
        let mut body = vec![0u8; size];
        stream
            .read_exact(&mut body)
            .await
            .map_err(|e| Self::unreachable(address, format!("read: {e}")))?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, response_header_version)
            .map_err(|e| WireError::Protocol(format!("decoding response header: {e:#}")))?;
        if header.correlation_id != correlation_id {
            return Err(WireError::Protocol(format!(
                "response correlation id {} does not match request {correlation_id}",
                header.correlation_id
            )));
        }
        Ok(body)
    }

    /// Wraps `tcp` in TLS, verifying the broker's certificate for the host of `address`.
    async fn tls_handshake(
        config: &Arc<rustls::ClientConfig>,
        tcp: TcpStream,
        address: &str,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, WireError> {
        let host = address
            .rsplit_once(':')
            .map_or(address, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| WireError::Protocol(format!("TLS server name '{host}': {e}")))?;
        tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| Self::unreachable(address, format!("TLS handshake: {e}")))
    }

    /// One request on a connection being set up (before it is shared).
    pub(super) async fn setup_call<R: WireRequest>(
        &self,
        connection: &mut Connection,
        address: &str,
        request: &R,
    ) -> Result<R::Response, WireError> {
        let version = Self::pick_version::<R>(connection, address, None)?;
        let correlation_id = self.next_correlation_id();
        let frame = self.encode_frame(request, version, correlation_id)?;
        let mut body = Self::round_trip(
            connection.stream.as_mut(),
            address,
            &frame,
            correlation_id,
            R::Response::header_version(version),
        )
        .await?;
        R::Response::decode(&mut body, version)
            .map_err(|e| WireError::Protocol(format!("decoding {:?}: {e:#}", R::KEY)))
    }

    /// Opens a connection and asks the broker which API versions it supports.
    pub(super) async fn connect(&self, address: &str) -> Result<Connection, WireError> {
        let connecting = tokio::time::timeout(self.request_timeout, async {
            let tcp = TcpStream::connect(address)
                .await
                .map_err(|e| Self::unreachable(address, format!("connect: {e}")))?;
            tcp.set_nodelay(true)
                .map_err(|e| Self::unreachable(address, format!("connect: {e}")))?;
            let mut stream: Box<dyn Io> = match &self.tls {
                None => Box::new(tcp),
                Some(config) => Box::new(Self::tls_handshake(config, tcp, address).await?),
            };
            let mut version = API_VERSIONS_VERSION;
            loop {
                let request = ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str(CLIENT_SOFTWARE_NAME))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    )));
                let correlation_id = self.next_correlation_id();
                let frame = self.encode_frame(&request, version, correlation_id)?;
                let mut body = Self::round_trip(
                    &mut stream,
                    address,
                    &frame,
                    correlation_id,
                    ApiVersionsResponse::header_version(version),
                )
                .await?;
                // A broker that does not know this ApiVersions version says so in a v0 body,
                // whose first field is the error code like in every version.
                let error_code = body.as_ref().get(..2).map(|mut b| b.get_i16());
                if error_code == Some(code::UNSUPPORTED_VERSION) && version > 0 {
                    tracing::debug!(address, version, "ApiVersions unsupported, retrying v0");
                    version = 0;
                    continue;
                }
                let response = ApiVersionsResponse::decode(&mut body, version)
                    .map_err(|e| WireError::Protocol(format!("decoding ApiVersions: {e:#}")))?;
                check("ApiVersions", address, response.error_code, None)?;
                let versions = response
                    .api_keys
                    .iter()
                    .map(|k| (k.api_key, (k.min_version, k.max_version)))
                    .collect();
                let mut connection = Connection { stream, versions };
                if let Some((mechanism, username, password)) = self.security.sasl.clone() {
                    self.authenticate(&mut connection, address, mechanism, &username, &password)
                        .await?;
                }
                tracing::debug!(address, "connected to Kafka broker");
                return Ok(connection);
            }
        });
        match connecting.await {
            Ok(result) => result,
            Err(_) => Err(Self::unreachable(
                address,
                format!("no answer within {:?}", self.request_timeout),
            )),
        }
    }

    /// The version of `R` to use with a broker: the highest both sides support, at most `cap`.
    pub(super) fn pick_version<R: WireRequest>(
        connection: &Connection,
        address: &str,
        cap: Option<i16>,
    ) -> Result<i16, WireError> {
        let Some(&(broker_min, broker_max)) = connection.versions.get(&(R::KEY as i16)) else {
            return Err(WireError::Protocol(format!(
                "broker {address} does not support {:?}",
                R::KEY
            )));
        };
        let min = broker_min.max(R::VERSIONS.min);
        let max = broker_max.min(R::VERSIONS.max).min(cap.unwrap_or(i16::MAX));
        if min > max {
            return Err(WireError::Protocol(format!(
                "no common {:?} version: broker {address} supports {broker_min}..{broker_max}, \
                 this client {}..{}{}",
                R::KEY,
                R::VERSIONS.min,
                R::VERSIONS.max,
                cap.map(|c| format!(" (capped at {c})")).unwrap_or_default(),
            )));
        }
        Ok(max)
    }
}
