//! SCRAM users: creating, replacing and deleting their credentials
//! (`AlterUserScramCredentials`), and which mechanisms each has (`DescribeUserScramCredentials`).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::messages::{
    self, AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::scram_credential::{ScramCredential, ScramCredentialError, ScramMechanism};
use crate::kafka::wire::error::{check, code, error_name};
use crate::kafka::wire::route::Target;
use crate::kafka::wire::{WireClient, WireError};

impl WireClient {
    /// Gives `user` a SCRAM credential for `mechanism` with `password`, creating the user or
    /// replacing that mechanism's credential (`AlterUserScramCredentials`); the user's other
    /// mechanism is untouched. The password does not leave this process: the client draws a
    /// random 32-byte salt and sends the salted password (PBKDF2 with `iterations` rounds), as
    /// Kafka's own admin client does. Kafka accepts 4096 to 16384 iterations; another count is
    /// refused here, before hashing, with the error the controller would give
    /// (`UNACCEPTABLE_CREDENTIAL`). Any broker forwards the change to the controller.
    pub async fn upsert_scram_user(
        &self,
        user: &str,
        mechanism: ScramMechanism,
        password: &str,
        iterations: i32,
    ) -> Result<(), WireError> {
        use messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
        let api = "AlterUserScramCredentials";
        let resource = format!("{user} ({mechanism})");
        let credential = ScramCredential::generate(mechanism, password, iterations).map_err(
            |error| match error {
                ScramCredentialError::Iterations { .. } => WireError::Broker {
                    api,
                    resource: resource.clone(),
                    code: code::UNACCEPTABLE_CREDENTIAL,
                    name: error_name(code::UNACCEPTABLE_CREDENTIAL),
                    message: Some(format!("{error} (refused before sending)")),
                },
                ScramCredentialError::NoRandomness => WireError::protocol(error),
            },
        )?;
        let (credential, resource) = (&credential, &resource);
        self.retrying(api, || async move {
            let (_, response) = self
                .call(Target::Any, None, true, &|_| {
                    AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                        ScramCredentialUpsertion::default()
                            .with_name(StrBytes::from_string(user.to_string()))
                            .with_mechanism(mechanism.code())
                            .with_iterations(credential.iterations)
                            .with_salt(Bytes::copy_from_slice(&credential.salt))
                            .with_salted_password(Bytes::copy_from_slice(
                                &credential.salted_password,
                            )),
                    ])
                })
                .await?;
            scram_alteration_result(api, resource, user, &response, &[])
        })
        .await
    }

    /// Removes `user`'s SCRAM credential for `mechanism` (`AlterUserScramCredentials`): new
    /// logins with it fail; connections already authenticated stay open. A credential already
    /// gone is not an error.
    pub async fn delete_scram_user(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<(), WireError> {
        use messages::alter_user_scram_credentials_request::ScramCredentialDeletion;
        let api = "AlterUserScramCredentials";
        let resource = &format!("{user} ({mechanism})");
        self.retrying(api, || async move {
            let (_, response) = self
                .call(Target::Any, None, true, &|_| {
                    AlterUserScramCredentialsRequest::default().with_deletions(vec![
                        ScramCredentialDeletion::default()
                            .with_name(StrBytes::from_string(user.to_string()))
                            .with_mechanism(mechanism.code()),
                    ])
                })
                .await?;
            scram_alteration_result(api, resource, user, &response, &[code::RESOURCE_NOT_FOUND])
        })
        .await
    }

    /// The SCRAM mechanisms each of `users` has a credential for
    /// (`DescribeUserScramCredentials`); users without any are absent. Answered by the broker
    /// from its copy of the cluster metadata, which follows a change within moments.
    pub async fn scram_users(
        &self,
        users: &[String],
    ) -> Result<BTreeMap<String, Vec<ScramMechanism>>, WireError> {
        use messages::describe_user_scram_credentials_request::UserName;
        // Kafka refuses a user named twice (DUPLICATE_RESOURCE); no user at all means every user.
        let users: BTreeSet<&str> = users.iter().map(String::as_str).collect();
        if users.is_empty() {
            return Ok(BTreeMap::new());
        }
        let api = "DescribeUserScramCredentials";
        let users = &users;
        self.retrying(api, || async move {
            let (_, response) = self
                .call(Target::Any, None, true, &|_| {
                    DescribeUserScramCredentialsRequest::default().with_users(Some(
                        users
                            .iter()
                            .map(|u| {
                                UserName::default().with_name(StrBytes::from_string(u.to_string()))
                            })
                            .collect(),
                    ))
                })
                .await?;
            check(
                api,
                "users",
                response.error_code,
                response.error_message.as_ref(),
            )?;
            let mut out = BTreeMap::new();
            for result in response.results {
                if result.error_code == code::RESOURCE_NOT_FOUND {
                    continue;
                }
                check(
                    api,
                    &result.user,
                    result.error_code,
                    result.error_message.as_ref(),
                )?;
                let mut mechanisms = result
                    .credential_infos
                    .iter()
                    .map(|info| {
                        ScramMechanism::from_code(info.mechanism).ok_or_else(|| {
                            WireError::protocol(format!(
                                "user '{}' has a credential of unknown SCRAM mechanism {}",
                                result.user, info.mechanism
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, WireError>>()?;
                mechanisms.sort();
                mechanisms.dedup();
                if !mechanisms.is_empty() {
                    out.insert(result.user.to_string(), mechanisms);
                }
            }
            Ok(out)
        })
        .await
    }
}

/// The outcome for `user` in an `AlterUserScramCredentials` answer; error codes in `tolerated`
/// count as success.
fn scram_alteration_result(
    api: &'static str,
    resource: &str,
    user: &str,
    response: &messages::AlterUserScramCredentialsResponse,
    tolerated: &[i16],
) -> Result<(), WireError> {
    let result = response
        .results
        .iter()
        .find(|r| r.user.as_str() == user)
        .ok_or_else(|| WireError::protocol(format!("{api} returned no result for '{user}'")))?;
    if tolerated.contains(&result.error_code) {
        return Ok(());
    }
    check(
        api,
        resource,
        result.error_code,
        result.error_message.as_ref(),
    )
}
