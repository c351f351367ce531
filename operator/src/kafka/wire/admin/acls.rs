//! ACLs: creating them, describing those of a principal, and deleting them.

use kafka_protocol::messages::{self, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::acl::{self, AclBinding};
use crate::kafka::wire::error::check;
use crate::kafka::wire::route::Target;
use crate::kafka::wire::{WireClient, WireError};

impl WireClient {
    /// Creates `bindings` (`CreateAcls`; one that exists already is left as is). Kafka creates
    /// each on its own: the answer has one result per binding, in their order, an error naming
    /// the binding it refused. The outer error is for the request as a whole. Any broker
    /// forwards the change to the controller; the brokers' authorizers apply it moments later.
    pub async fn create_acls(
        &self,
        bindings: &[AclBinding],
    ) -> Result<Vec<Result<(), WireError>>, WireError> {
        if bindings.is_empty() {
            return Ok(Vec::new());
        }
        let api = "CreateAcls";
        self.retrying(api, || async move {
            let (_, response) = self
                .call(Target::Any, None, true, &|_| {
                    CreateAclsRequest::default().with_creations(
                        bindings
                            .iter()
                            .map(|b| {
                                messages::create_acls_request::AclCreation::default()
                                    .with_resource_type(b.resource_type.code())
                                    .with_resource_name(StrBytes::from_string(b.name.clone()))
                                    .with_resource_pattern_type(b.pattern.code())
                                    .with_principal(StrBytes::from_string(b.principal.clone()))
                                    .with_host(StrBytes::from_string(b.host.clone()))
                                    .with_operation(b.operation.code())
                                    .with_permission_type(b.permission.code())
                            })
                            .collect(),
                    )
                })
                .await?;
            if response.results.len() != bindings.len() {
                return Err(WireError::protocol(format!(
                    "{api} answered {} results for {} ACLs",
                    response.results.len(),
                    bindings.len()
                )));
            }
            Ok(bindings
                .iter()
                .zip(&response.results)
                .map(|(b, r)| check(api, b, r.error_code, r.error_message.as_ref()))
                .collect())
        })
        .await
    }

    /// Every ACL of `principal` (e.g. `User:alice`), whatever its resource, pattern, host,
    /// operation and permission, sorted (`DescribeAcls`). Answered by the broker's authorizer,
    /// so it shows what that broker enforces.
    pub async fn acls_of_principal(&self, principal: &str) -> Result<Vec<AclBinding>, WireError> {
        let api = "DescribeAcls";
        self.retrying(api, || async move {
            let (_, response) = self
                .call(Target::Any, None, true, &|_| {
                    DescribeAclsRequest::default()
                        .with_resource_type_filter(acl::filter::ANY)
                        .with_resource_name_filter(None)
                        .with_pattern_type_filter(acl::filter::ANY)
                        .with_principal_filter(Some(StrBytes::from_string(principal.to_string())))
                        .with_host_filter(None)
                        .with_operation(acl::filter::ANY)
                        .with_permission_type(acl::filter::ANY)
                })
                .await?;
            check(
                api,
                principal,
                response.error_code,
                response.error_message.as_ref(),
            )?;
            let mut out = Vec::new();
            for resource in &response.resources {
                for entry in &resource.acls {
                    out.push(
                        AclBinding::from_wire(
                            resource.resource_type,
                            &resource.resource_name,
                            resource.pattern_type,
                            &entry.principal,
                            &entry.host,
                            entry.operation,
                            entry.permission_type,
                        )
                        .map_err(WireError::Protocol)?,
                    );
                }
            }
            out.sort();
            out.dedup();
            Ok(out)
        })
        .await
    }

    /// Deletes `bindings`, each matched exactly (`DeleteAcls`); returns the ACLs deleted,
    /// sorted. A binding that matches nothing is not an error.
    pub async fn delete_acls(&self, bindings: &[AclBinding]) -> Result<Vec<AclBinding>, WireError> {
        if bindings.is_empty() {
            return Ok(Vec::new());
        }
        let api = "DeleteAcls";
        self.retrying(api, || async move {
            let (_, response) = self
                .call(Target::Any, None, true, &|_| {
                    DeleteAclsRequest::default().with_filters(
                        bindings
                            .iter()
                            .map(|b| {
                                messages::delete_acls_request::DeleteAclsFilter::default()
                                    .with_resource_type_filter(b.resource_type.code())
                                    .with_resource_name_filter(Some(StrBytes::from_string(
                                        b.name.clone(),
                                    )))
                                    .with_pattern_type_filter(b.pattern.code())
                                    .with_principal_filter(Some(StrBytes::from_string(
                                        b.principal.clone(),
                                    )))
                                    .with_host_filter(Some(StrBytes::from_string(b.host.clone())))
                                    .with_operation(b.operation.code())
                                    .with_permission_type(b.permission.code())
                            })
                            .collect(),
                    )
                })
                .await?;
            if response.filter_results.len() != bindings.len() {
                return Err(WireError::protocol(format!(
                    "{api} answered {} results for {} filters",
                    response.filter_results.len(),
                    bindings.len()
                )));
            }
            let mut deleted = Vec::new();
            for (b, result) in bindings.iter().zip(&response.filter_results) {
                check(api, b, result.error_code, result.error_message.as_ref())?;
                for m in &result.matching_acls {
                    check(api, b, m.error_code, m.error_message.as_ref())?;
                    deleted.push(
                        AclBinding::from_wire(
                            m.resource_type,
                            &m.resource_name,
                            m.pattern_type,
                            &m.principal,
                            &m.host,
                            m.operation,
                            m.permission_type,
                        )
                        .map_err(WireError::Protocol)?,
                    );
                }
            }
            deleted.sort();
            deleted.dedup();
            Ok(deleted)
        })
        .await
    }
}
