//! SASL authentication of a new connection (KIP-152): `SaslHandshake`, then the PLAIN message
//! or the SCRAM exchange in `SaslAuthenticate` frames.

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

use super::conn::Connection;
use super::error::{check, error_name};
use super::{WireClient, WireError};
use crate::kafka::security::{Mechanism, Scram, plain_message};

impl WireClient {
    /// SASL authentication (KIP-152: `SaslHandshake` then `SaslAuthenticate` frames).
    pub(super) async fn authenticate(
        &self,
        connection: &mut Connection,
        address: &str,
        mechanism: Mechanism,
        username: &str,
        password: &str,
    ) -> Result<(), WireError> {
        let handshake = self
            .setup_call(
                connection,
                address,
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism.name())),
            )
            .await?;
        if handshake.error_code != 0 {
            let offered: Vec<String> = handshake.mechanisms.iter().map(|m| m.to_string()).collect();
            return Err(WireError::Broker {
                api: "SaslHandshake",
                resource: address.to_string(),
                code: handshake.error_code,
                name: error_name(handshake.error_code),
                message: Some(format!(
                    "mechanism {} not enabled; the broker offers {}",
                    mechanism.name(),
                    offered.join(", ")
                )),
            });
        }
        let mut step = async |bytes: Vec<u8>| -> Result<Bytes, WireError> {
            let response = self
                .setup_call(
                    connection,
                    address,
                    &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
                )
                .await?;
            check(
                "SaslAuthenticate",
                format!("{username}@{address}"),
                response.error_code,
                response.error_message.as_ref(),
            )?;
            Ok(response.auth_bytes)
        };
        match mechanism {
            Mechanism::Plain => {
                step(plain_message(username, password)).await?;
            }
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let scram =
                    Scram::new(mechanism, username, password).map_err(WireError::Protocol)?;
                let server_first = step(scram.client_first().into_bytes()).await?;
                let last = scram
                    .client_final(&String::from_utf8_lossy(&server_first))
                    .map_err(WireError::Protocol)?;
                let server_final = step(last.message.clone().into_bytes()).await?;
                last.verify(&String::from_utf8_lossy(&server_final))
                    .map_err(WireError::Protocol)?;
            }
        }
        Ok(())
    }
}
