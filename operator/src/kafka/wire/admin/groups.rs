//! Consumer groups: listing and describing them, and reading and committing their offsets.

use std::collections::BTreeMap;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{
    self, DescribeGroupsRequest, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::kafka::wire::error::check;
use crate::kafka::wire::request::{group_id, topic_name};
use crate::kafka::wire::route::{COORDINATOR_GROUP, Target, coordinator_of, invert};
use crate::kafka::wire::{
    CommittedOfGroups, GroupDescription, GroupListing, GroupMember, TopicPartition, WireClient,
    WireError,
};

impl WireClient {
    /// Every group known to any broker of the cluster.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, WireError> {
        let metadata = self.metadata(Some(&[])).await?;
        let mut groups = BTreeMap::new();
        for broker in metadata.brokers {
            let resource = format!("broker {}", broker.id);
            let resource = &resource;
            let response = self
                .retrying("ListGroups", || async move {
                    let (version, response) = self
                        .call(Target::Node(broker.id), None, true, &|_| {
                            ListGroupsRequest::default()
                        })
                        .await?;
                    check("ListGroups", resource, response.error_code, None)?;
                    Ok((version, response))
                })
                .await?;
            let (version, response) = response;
            for g in response.groups {
                let group_id = g.group_id.0.to_string();
                groups.insert(
                    group_id.clone(),
                    GroupListing {
                        group_id,
                        protocol_type: g.protocol_type.to_string(),
                        state: (version >= 4).then(|| g.group_state.to_string()),
                        group_type: (version >= 5).then(|| g.group_type.to_string()),
                    },
                );
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Describes classic consumer groups, asking each group's coordinator. A group that does not
    /// exist is an error `GROUP_ID_NOT_FOUND` (69) from Kafka 4 (`DescribeGroups` v6), or state
    /// `Dead` from older brokers; so is a group using the new consumer protocol (KIP-848).
    pub async fn describe_groups(
        &self,
        ids: &[String],
    ) -> Result<Vec<GroupDescription>, WireError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.retrying("DescribeGroups", || async move {
            let coordinators = self.find_coordinators(COORDINATOR_GROUP, ids).await?;
            let mut out = Vec::new();
            for (coordinator, groups) in invert(&coordinators) {
                let (_, response) = self
                    .call(Target::Node(coordinator), None, true, &|_| {
                        DescribeGroupsRequest::default()
                            .with_groups(groups.iter().map(|g| group_id(g)).collect())
                    })
                    .await?;
                for g in response.groups {
                    check(
                        "DescribeGroups",
                        &g.group_id.0,
                        g.error_code,
                        g.error_message.as_ref(),
                    )?;
                    out.push(GroupDescription {
                        group_id: g.group_id.0.to_string(),
                        state: g.group_state.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                        protocol: g.protocol_data.to_string(),
                        members: g
                            .members
                            .iter()
                            .map(|m| GroupMember {
                                member_id: m.member_id.to_string(),
                                group_instance_id: m
                                    .group_instance_id
                                    .as_ref()
                                    .map(|i| i.to_string()),
                                client_id: m.client_id.to_string(),
                                client_host: m.client_host.to_string(),
                                assigned_topics: assigned_topics(
                                    &g.protocol_type,
                                    &m.member_assignment,
                                ),
                            })
                            .collect(),
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    /// The group's committed offsets for every partition it has one for (`OffsetFetch` with all
    /// topics and `require_stable`, so offsets pending in a transaction make it wait and retry
    /// until that transaction ends).
    pub async fn committed_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>, WireError> {
        self.committed_offsets_of(group, true).await
    }

    /// [`Self::committed_offsets`], with `require_stable` as given.
    async fn committed_offsets_of(
        &self,
        group: &str,
        require_stable: bool,
    ) -> Result<BTreeMap<TopicPartition, i64>, WireError> {
        let api = "OffsetFetch";
        let keys_owned = [group.to_string()];
        let keys: &[String] = &keys_owned;
        self.retrying(api, || async move {
            let coordinators = self.find_coordinators(COORDINATOR_GROUP, keys).await?;
            let coordinator = coordinator_of(&coordinators, group)?;
            let (version, response) = self
                .call(Target::Node(coordinator), None, true, &|version| {
                    // v8+ asks for groups in an array; before, for one group at the top level.
                    let request = OffsetFetchRequest::default()
                        .with_require_stable(require_stable && version >= 7);
                    if version >= 8 {
                        request.with_groups(vec![
                            messages::offset_fetch_request::OffsetFetchRequestGroup::default()
                                .with_group_id(group_id(group))
                                .with_topics(None),
                        ])
                    } else {
                        request.with_group_id(group_id(group)).with_topics(None)
                    }
                })
                .await?;
            let mut out = BTreeMap::new();
            let mut add = |tp: TopicPartition, offset: i64, error_code: i16| {
                check(api, format!("{group}/{tp}"), error_code, None)?;
                if offset >= 0 {
                    out.insert(tp, offset);
                }
                Ok::<(), WireError>(())
            };
            if version >= 8 {
                for g in response.groups {
                    check(api, group, g.error_code, None)?;
                    for topic in g.topics {
                        for p in topic.partitions {
                            let tp =
                                TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                            add(tp, p.committed_offset, p.error_code)?;
                        }
                    }
                }
            } else {
                check(api, group, response.error_code, None)?;
                for topic in response.topics {
                    for p in topic.partitions {
                        let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                        add(tp, p.committed_offset, p.error_code)?;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Committed offsets of many groups: one `OffsetFetch` (v8+, groups in an array) per group
    /// coordinator, whatever the number of groups. Brokers older than v8 get one request per
    /// group.
    pub async fn committed_offsets_of_groups(
        &self,
        groups: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<TopicPartition, i64>>, WireError> {
        Ok(self
            .committed_of_groups(groups)
            .await?
            .into_iter()
            .map(|(group, offsets)| {
                let offsets = offsets.into_iter().map(|(tp, (o, _))| (tp, o)).collect();
                (group, offsets)
            })
            .collect())
    }

    /// [`Self::committed_offsets_of_groups`], with each offset's commit metadata (the string a
    /// committer stores beside it; empty when none, and always for brokers older than v8).
    ///
    /// Without `require_stable`: offsets a transaction has sent but not committed yet are left
    /// out (the partition shows its last committed offset). With it, one such transaction, left
    /// open by a killed worker, would make every fetch of the group fail with
    /// UNSTABLE_OFFSET_COMMIT until the transaction is aborted, so an observer built on this
    /// could not see the very transaction it has to fence.
    pub async fn committed_of_groups(
        &self,
        groups: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<TopicPartition, (i64, String)>>, WireError> {
        Ok(self.committed_of_groups_inner(groups, true).await?.0)
    }

    /// [`Self::committed_of_groups`], with a group the coordinator would not answer for (an
    /// error code of its own, e.g. `NOT_COORDINATOR` while a broker still loads the group's
    /// offsets partition) set apart with its error instead of failing every group's answer.
    pub async fn committed_of_each_group(
        &self,
        groups: &[String],
    ) -> Result<(CommittedOfGroups, BTreeMap<String, WireError>), WireError> {
        self.committed_of_groups_inner(groups, false).await
    }

    /// Strict: any group's error fails the call (and a routing error is retried as a whole).
    async fn committed_of_groups_inner(
        &self,
        groups: &[String],
        strict: bool,
    ) -> Result<(CommittedOfGroups, BTreeMap<String, WireError>), WireError> {
        let api = "OffsetFetch";
        if groups.is_empty() {
            return Ok(Default::default());
        }
        self.retrying(api, || async move {
            let coordinators = self.find_coordinators(COORDINATOR_GROUP, groups).await?;
            let mut out: CommittedOfGroups = BTreeMap::new();
            let mut failed: BTreeMap<String, WireError> = BTreeMap::new();
            for (coordinator, ids) in invert(&coordinators) {
                let (version, response) = self
                    .call(Target::Node(coordinator), None, true, &|version| {
                        let request = OffsetFetchRequest::default();
                        if version >= 8 {
                            request.with_groups(
                                ids.iter()
                                    .map(|g| {
                                        messages::offset_fetch_request::OffsetFetchRequestGroup::default()
                                            .with_group_id(group_id(g))
                                            .with_topics(None)
                                    })
                                    .collect(),
                            )
                        } else {
                            request
                        }
                    })
                    .await?;
                if version < 8 {
                    for g in &ids {
                        match self.committed_offsets_of(g, false).await {
                            Ok(offsets) => {
                                let offsets = offsets
                                    .into_iter()
                                    .map(|(tp, o)| (tp, (o, String::new())))
                                    .collect();
                                out.insert(g.to_string(), offsets);
                            }
                            Err(error @ WireError::Broker { .. }) => {
                                failed.insert(g.to_string(), error);
                            }
                            Err(error) => return Err(error),
                        }
                    }
                    continue;
                }
                'groups: for g in response.groups {
                    let group = g.group_id.0.to_string();
                    if let Err(error) = check(api, &group, g.error_code, None) {
                        failed.insert(group, error);
                        continue;
                    }
                    let mut offsets = BTreeMap::new();
                    for topic in g.topics {
                        for p in topic.partitions {
                            let tp =
                                TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                            if let Err(error) =
                                check(api, format!("{group}/{tp}"), p.error_code, None)
                            {
                                failed.insert(group, error);
                                continue 'groups;
                            }
                            if p.committed_offset >= 0 {
                                let metadata = p
                                    .metadata
                                    .as_ref()
                                    .map(|m| m.to_string())
                                    .unwrap_or_default();
                                offsets.insert(tp, (p.committed_offset, metadata));
                            }
                        }
                    }
                    out.insert(group, offsets);
                }
            }
            if strict && let Some((_, error)) = failed.pop_first() {
                return Err(error);
            }
            Ok((out, failed))
        })
        .await
    }

    /// Commits offsets for `group` as an admin would (generation -1, no member id): the
    /// coordinator only accepts this while the group has no members. Used to reset offsets.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), WireError> {
        self.commit_offsets_marked(group, offsets, None).await
    }

    /// [`Self::commit_offsets`] with `metadata` as every partition's commit metadata (which
    /// OffsetFetch returns until the next commit replaces it).
    pub async fn commit_offsets_marked(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
        metadata: Option<&str>,
    ) -> Result<(), WireError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let api = "OffsetCommit";
        let keys_owned = [group.to_string()];
        let keys: &[String] = &keys_owned;
        self.retrying(api, || async move {
            let coordinators = self.find_coordinators(COORDINATOR_GROUP, keys).await?;
            let coordinator = coordinator_of(&coordinators, group)?;
            let (_, response) = self
                .call(Target::Node(coordinator), None, true, &|_| {
                    let mut topics: BTreeMap<&str, Vec<_>> = BTreeMap::new();
                    for (tp, offset) in offsets {
                        topics.entry(tp.topic.as_str()).or_default().push(
                            messages::offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(tp.partition)
                                .with_committed_offset(*offset)
                                .with_committed_metadata(metadata.map(|m| StrBytes::from_string(m.to_string()))),
                        );
                    }
                    OffsetCommitRequest::default()
                        .with_group_id(group_id(group))
                        .with_generation_id_or_member_epoch(-1)
                        .with_member_id(StrBytes::new())
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(name, partitions)| {
                                    messages::offset_commit_request::OffsetCommitRequestTopic::default()
                                        .with_name(topic_name(name))
                                        .with_partitions(partitions)
                                })
                                .collect(),
                        )
                })
                .await?;
            for topic in response.topics {
                for p in topic.partitions {
                    let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                    check(api, format!("{group}/{tp}"), p.error_code, None)?;
                }
            }
            Ok(())
        })
        .await
    }
}

/// The topics of a classic `consumer` group member's assignment (empty when it cannot be read).
fn assigned_topics(protocol_type: &str, assignment: &Bytes) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    if protocol_type != "consumer" || assignment.len() < 2 {
        return Vec::new();
    }
    let mut buf = assignment.clone();
    let version = buf.get_i16();
    let version = version.clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => {
            let mut topics: Vec<String> = a
                .assigned_partitions
                .iter()
                .map(|t| t.topic.0.to_string())
                .collect();
            topics.sort();
            topics.dedup();
            topics
        }
        Err(_) => Vec::new(),
    }
}
