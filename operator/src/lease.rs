//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas of the operator can
//! run and only one reconciles and writes. The holder renews the lease every `renew`; a
//! candidate takes it over when it has not been renewed for `duration`. Losing it ends
//! [`Leader::lost`]: the process then stops, and its replacement waits its turn.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use crate::fence::Fence;

/// Who competes for which lease, and how long a lease lasts.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews it (well under `duration`).
    pub renew: Duration,
}

impl Election {
    /// An election with Kubernetes' usual timings (15 s lease, renewed every 5 s).
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Election {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(5),
        }
    }

    /// [`Election::attempt`], keeping `fence` open for `duration - renew` from when a request
    /// that won or renewed the lease was sent, and closing it when another replica holds it.
    /// `duration - renew` rather than `duration`: the margin covers the time a write already
    /// past the fence takes to reach the API server, and clocks that run apart.
    async fn attempt_fenced(
        &self,
        api: &Api<Lease>,
        fence: &Fence,
    ) -> Result<Attempt, kube::Error> {
        let sent = tokio::time::Instant::now();
        let attempt = self.attempt(api).await;
        match &attempt {
            Ok(Attempt::Held) => fence.renewed(sent, self.duration.saturating_sub(self.renew)),
            Ok(Attempt::HeldBy(_)) => fence.close(),
            Err(_) => {}
        }
        attempt
    }
}

/// What one look at the lease found.
enum Attempt {
    /// We hold it now.
    Held,
    /// Another replica holds it.
    HeldBy(String),
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// Whether a lease held by someone else has expired.
fn expired(spec: &LeaseSpec) -> bool {
    let Some(renewed) = spec.renew_time.as_ref() else {
        return true;
    };
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    Timestamp::now().as_second() - renewed.0.as_second() > seconds
}

/// The holder of a lease, for as long as it keeps it.
pub struct Leader {
    api: Api<Lease>,
    election: Election,
    /// Open while the lease is surely still ours.
    fence: Fence,
}

impl Election {
    async fn attempt(&self, api: &Api<Lease>) -> Result<Attempt, kube::Error> {
        let duration = i32::try_from(self.duration.as_secs()).unwrap_or(15);
        match api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(duration),
                        acquire_time: Some(now()),
                        renew_time: Some(now()),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(Attempt::Held),
                    // Someone created it first.
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        Ok(Attempt::HeldBy("another replica".into()))
                    }
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                let mine = holder == self.identity;
                if !mine && !holder.is_empty() && !expired(&spec) {
                    return Ok(Attempt::HeldBy(holder));
                }
                let transitions = spec.lease_transitions.unwrap_or(0);
                lease.spec = Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: if mine { spec.acquire_time } else { Some(now()) },
                    renew_time: Some(now()),
                    lease_transitions: Some(if mine { transitions } else { transitions + 1 }),
                    ..spec
                });
                // Replace carries the resourceVersion read above: two candidates cannot both win.
                match api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(Attempt::Held),
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        Ok(Attempt::HeldBy("another replica".into()))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(self, client: Client) -> Leader {
        let api: Api<Lease> = Api::namespaced(client, &self.namespace);
        let fence = Fence::leased();
        let mut last_holder = String::new();
        loop {
            match self.attempt_fenced(&api, &fence).await {
                Ok(Attempt::Held) => {
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    return Leader {
                        api,
                        election: self,
                        fence,
                    };
                }
                Ok(Attempt::HeldBy(holder)) => {
                    if holder != last_holder {
                        info!(lease = %self.name, %holder, "waiting for the lease");
                        last_holder = holder;
                    }
                }
                Err(e) => warn!(lease = %self.name, error = %e, "cannot read or take the lease"),
            }
            tokio::time::sleep(self.renew).await;
        }
    }
}

impl Leader {
    /// Open only while this replica surely holds the lease: give it to everything that
    /// changes something ([`crate::controller::Options::fence`]).
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Renews the lease until that fails or another replica took it; then returns.
    pub async fn lost(&self) {
        let mut failing_since: Option<std::time::Instant> = None;
        loop {
            tokio::time::sleep(self.election.renew).await;
            match self.election.attempt_fenced(&self.api, &self.fence).await {
                Ok(Attempt::Held) => failing_since = None,
                Ok(Attempt::HeldBy(holder)) => {
                    warn!(lease = %self.election.name, %holder, "lost the lease");
                    return;
                }
                Err(e) => {
                    // A renewal may fail for a moment; give up only when the lease has expired.
                    let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                    warn!(lease = %self.election.name, error = %e, "renewing the lease failed");
                    if since.elapsed() >= self.election.duration {
                        self.fence.close();
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up at once (on shutdown), so a successor need not wait for it to expire.
    pub async fn release(self) {
        self.fence.close();
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.election.name).await
            && lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.election.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.renew_time = None;
            }
            let name = lease.name_any();
            if let Err(e) = self
                .api
                .replace(&name, &PostParams::default(), &lease)
                .await
            {
                warn!(lease = %name, error = %e, "could not release the lease");
            }
        }
    }
}
