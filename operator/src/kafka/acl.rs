//! Kafka ACL bindings as plain data: who (a principal, from a host) may or may not do what
//! (an operation) on which resources (a type and a literal name or a name prefix). Ordered, so
//! the ACLs a principal should have and those it has compare as sets; shown in one line for
//! status messages and events. The wire codes are Kafka's (`org.apache.kafka.common.acl` and
//! `org.apache.kafka.common.resource`); every value Kafka 4 defines is here, so that what a
//! broker reports about a principal is never silently narrowed.

use std::fmt;

/// The resource name of the cluster itself (`Resource.CLUSTER_NAME`).
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";
/// The host of an ACL that applies from anywhere.
pub const ANY_HOST: &str = "*";

/// Wire codes of filters only (`ANY` matches every value; `MATCH` is a pattern filter matching
/// literal, wildcard and prefixed patterns that apply to a name).
pub(crate) mod filter {
    pub const ANY: i8 = 1;
}

/// The kind of resource an ACL is about (`ResourceType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclResource {
    Topic,
    Group,
    /// The cluster; its name is always [`CLUSTER_RESOURCE_NAME`].
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

/// How an ACL's resource name matches (`PatternType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclPattern {
    /// The name exactly (`*` is the wildcard: every resource of the type).
    Literal,
    /// Every name that starts with it.
    Prefixed,
}

/// What an ACL allows or denies (`AclOperation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
    TwoPhaseCommit,
}

/// Whether an ACL allows or denies (`AclPermissionType`); a deny wins over any allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclPermission {
    Allow,
    Deny,
}

/// Codes on the wire, both ways. `from_code` is `None` for `UNKNOWN`, `ANY` and `MATCH` (filter
/// values, never in a binding) and for codes this client does not know.
macro_rules! wire_codes {
    ($type:ident { $($variant:ident = $code:literal,)* }) => {
        impl $type {
            /// Kafka's code on the wire.
            pub fn code(self) -> i8 {
                match self {
                    $($type::$variant => $code,)*
                }
            }

            /// The value of a wire code.
            pub fn from_code(code: i8) -> Option<$type> {
                match code {
                    $($code => Some($type::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

wire_codes!(AclResource {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
});
wire_codes!(AclPattern {
    Literal = 3,
    Prefixed = 4,
});
wire_codes!(AclOperation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
    TwoPhaseCommit = 15,
});
wire_codes!(AclPermission {
    Deny = 2,
    Allow = 3,
});

/// One ACL: `permission` for `principal` connecting from `host` to do `operation` on the
/// resources of `resource_type` that `name` matches by `pattern`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    pub resource_type: AclResource,
    pub name: String,
    pub pattern: AclPattern,
    /// `<type>:<name>`, e.g. `User:alice`.
    pub principal: String,
    /// A client address, or [`ANY_HOST`].
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

impl AclBinding {
    /// Allows `principal`, from any host, to do `operation` on the resources of
    /// `resource_type` that `name` matches by `pattern`.
    pub fn allow(
        principal: impl Into<String>,
        operation: AclOperation,
        resource_type: AclResource,
        name: impl Into<String>,
        pattern: AclPattern,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            name: name.into(),
            pattern,
            principal: principal.into(),
            host: ANY_HOST.to_string(),
            operation,
            permission: AclPermission::Allow,
        }
    }

    /// A binding from the codes a broker sent; an error names the first code that is not one
    /// of a binding's.
    pub fn from_wire(
        resource_type: i8,
        name: &str,
        pattern: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<AclBinding, String> {
        let unknown = |what: &str, code: i8| format!("ACL with unknown {what} code {code}");
        Ok(AclBinding {
            resource_type: AclResource::from_code(resource_type)
                .ok_or_else(|| unknown("resource type", resource_type))?,
            name: name.to_string(),
            pattern: AclPattern::from_code(pattern)
                .ok_or_else(|| unknown("pattern type", pattern))?,
            principal: principal.to_string(),
            host: host.to_string(),
            operation: AclOperation::from_code(operation)
                .ok_or_else(|| unknown("operation", operation))?,
            permission: AclPermission::from_code(permission)
                .ok_or_else(|| unknown("permission type", permission))?,
        })
    }
}

impl fmt::Display for AclBinding {
    /// `Allow User:alice Write Topic orders (literal)`, with ` from <host>` unless any host.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pattern = match self.pattern {
            AclPattern::Literal => "literal",
            AclPattern::Prefixed => "prefixed",
        };
        write!(
            f,
            "{:?} {} {:?} {:?} {} ({pattern})",
            self.permission, self.principal, self.operation, self.resource_type, self.name
        )?;
        if self.host != ANY_HOST {
            write!(f, " from {}", self.host)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn codes_are_kafka_s() {
        // From Kafka 4.3's enums (ResourceType, PatternType, AclOperation, AclPermissionType).
        assert_eq!(
            [
                AclResource::Topic,
                AclResource::Group,
                AclResource::Cluster,
                AclResource::TransactionalId
            ]
            .map(AclResource::code),
            [2, 3, 4, 5]
        );
        assert_eq!(
            [AclPattern::Literal, AclPattern::Prefixed].map(AclPattern::code),
            [3, 4]
        );
        assert_eq!(
            [
                AclOperation::All,
                AclOperation::Read,
                AclOperation::Write,
                AclOperation::Describe,
                AclOperation::IdempotentWrite
            ]
            .map(AclOperation::code),
            [2, 3, 4, 8, 12]
        );
        assert_eq!(
            [AclPermission::Deny, AclPermission::Allow].map(AclPermission::code),
            [2, 3]
        );
    }

    #[test]
    fn every_code_reads_back_and_filter_codes_are_not_values() {
        for code in 2..=15 {
            let operation = AclOperation::from_code(code).map(AclOperation::code);
            assert_eq!(operation, Some(code));
        }
        for code in 2..=7 {
            assert_eq!(
                AclResource::from_code(code).map(AclResource::code),
                Some(code)
            );
        }
        for code in [0, filter::ANY] {
            assert_eq!(AclResource::from_code(code), None);
            assert_eq!(AclOperation::from_code(code), None);
            assert_eq!(AclPermission::from_code(code), None);
        }
        // MATCH (2) is only ever a pattern filter.
        assert_eq!(AclPattern::from_code(2), None);
    }

    #[test]
    fn a_binding_shows_in_one_line() {
        let b = AclBinding::allow(
            "User:alice",
            AclOperation::Write,
            AclResource::Topic,
            "orders",
            AclPattern::Literal,
        );
        assert_eq!(
            b.to_string(),
            "Allow User:alice Write Topic orders (literal)"
        );
        let b = AclBinding {
            host: "10.0.0.1".into(),
            permission: AclPermission::Deny,
            ..AclBinding::allow(
                "User:bob",
                AclOperation::IdempotentWrite,
                AclResource::TransactionalId,
                "app-",
                AclPattern::Prefixed,
            )
        };
        assert_eq!(
            b.to_string(),
            "Deny User:bob IdempotentWrite TransactionalId app- (prefixed) from 10.0.0.1"
        );
    }

    #[test]
    fn sets_of_bindings_compare_whatever_the_order_they_came_in() {
        let a = AclBinding::allow(
            "User:a",
            AclOperation::Read,
            AclResource::Group,
            "g",
            AclPattern::Literal,
        );
        let b = AclBinding {
            operation: AclOperation::Describe,
            ..a.clone()
        };
        let one: BTreeSet<_> = [a.clone(), b.clone()].into();
        let other: BTreeSet<_> = [b, a.clone(), a].into();
        assert_eq!(one, other);
    }

    #[test]
    fn a_binding_from_unknown_codes_names_the_code() {
        let e = AclBinding::from_wire(2, "t", 3, "User:a", "*", 99, 3);
        assert_eq!(e, Err("ACL with unknown operation code 99".to_string()));
        let ok = AclBinding::from_wire(5, "app-", 4, "User:a", "*", 4, 3);
        assert_eq!(
            ok,
            Ok(AclBinding::allow(
                "User:a",
                AclOperation::Write,
                AclResource::TransactionalId,
                "app-",
                AclPattern::Prefixed
            ))
        );
    }
}
