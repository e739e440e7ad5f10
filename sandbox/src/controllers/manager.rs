//! Runs every simulated controller in one loop on the injectable clock, in the order a change
//! propagates: Deployments → ReplicaSets/StatefulSets/Jobs → kubelet → status roll-up → HPAs.
//!
//! One loop, not one task per controller, because determinism matters more than parallelism
//! here: with a virtual clock, a test that advances N seconds sees the same interleaving every
//! time, and the ticker lets [`crate::clock::VirtualClock::advance`] wait for each pass.
//!
//! A workload pass is a function of the clock and of its inputs (workloads, pods, namespaces,
//! Events), so once a pass has changed nothing, the next one would change nothing too unless an
//! input moved on or something waits
//! on the clock (a pod mid-life, a Ready pod inside `minReadySeconds`). Such passes are
//! skipped: an idle sandbox with thousands of Deployments then costs nothing per tick, however
//! busy its Leases or ConfigMaps are. Within a pass that does run, the Deployment and ReplicaSet
//! steps whose object and children kept their versions are skipped as well (`visited`). The
//! HPA keeps its own schedule and runs every tick.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::events::EventRecorder;
use super::hpa::Settings;
use super::hpa_sync::HpaController;
use super::http_metrics::HttpMetrics;
use super::index::OwnerIndex;
use super::metrics_api::{FetchError, MetricsApi};
use super::pods::{self, PodTimings};
use super::visited::{Step, Visited};
use super::{deployment, job, replicaset, statefulset};
use crate::clock::ClockHandle;
use crate::store::{GroupResource, Store};
use crate::{SandboxHandle, UserInfo};

/// The identity kube-controller-manager's HPA uses with `--use-service-account-credentials`.
pub const HPA_SERVICE_ACCOUNT: &str = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";

/// Everything a workload pass reads besides the clock: the workloads, their pods, the
/// namespaces that admit new pods, and the Events the recorders aggregate into.
fn inputs() -> Vec<GroupResource> {
    vec![
        deployment::deployments(),
        replicaset::replicasets(),
        statefulset::statefulsets(),
        job::jobs(),
        pods::pods(),
        GroupResource::new("", "namespaces"),
        GroupResource::new("", "events"),
    ]
}

/// Configuration of the simulated controllers.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    /// How often the loop runs (the resolution of every simulated delay).
    pub tick: Duration,
    /// Pod lifecycle timings.
    pub pods: PodTimings,
    /// HPA controller flags (`sync_period` is `--horizontal-pod-autoscaler-sync-period`).
    pub hpa: Settings,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            pods: PodTimings::default(),
            hpa: Settings::default(),
        }
    }
}

/// One event recorder per simulated controller, named like kube-controller-manager's.
#[derive(Debug)]
struct Recorders {
    deployment: EventRecorder,
    replicaset: EventRecorder,
    statefulset: EventRecorder,
    job: EventRecorder,
}

/// All simulated controllers over one store.
#[derive(Debug)]
pub struct Controllers {
    store: Arc<Store>,
    config: ControllerConfig,
    events: Recorders,
    /// `None` when no metrics source was given: HPAs are then left alone.
    hpa: Option<HpaController>,
    /// The resources of [`inputs`], built once.
    inputs: Vec<GroupResource>,
    /// The inputs' last change after the last workload pass that changed nothing and left
    /// nothing waiting on the clock; while the inputs stay there, passes are skipped.
    settled_at: Mutex<Option<u64>>,
    /// What each Deployment and ReplicaSet step read last: unchanged ones are skipped.
    visited: Mutex<Visited>,
}

impl Controllers {
    /// Controllers over `store`; the HPA controller runs only with a metrics source.
    pub fn new(
        store: Arc<Store>,
        config: ControllerConfig,
        metrics: Option<Arc<dyn MetricsApi>>,
    ) -> Self {
        let hpa = metrics.map(|m| HpaController::new(store.clone(), m, config.hpa.clone()));
        let events = Recorders {
            deployment: EventRecorder::new("deployment-controller"),
            replicaset: EventRecorder::new("replicaset-controller"),
            statefulset: EventRecorder::new("statefulset-controller"),
            job: EventRecorder::new("job-controller"),
        };
        Self {
            store,
            config,
            events,
            hpa,
            inputs: inputs(),
            settled_at: Mutex::new(None),
            visited: Mutex::default(),
        }
    }

    /// Controllers for a running sandbox, reading metrics over HTTPS from its public address
    /// as the HPA's ServiceAccount (`system:serviceaccount:kube-system:horizontal-pod-autoscaler`,
    /// given `system:masters` because the sandbox has no bootstrap RBAC roles for it).
    pub fn for_sandbox(
        sandbox: &SandboxHandle,
        config: ControllerConfig,
    ) -> Result<Self, FetchError> {
        let groups = [
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:masters",
        ];
        let user = UserInfo::new(HPA_SERVICE_ACCOUNT, &groups);
        let token = Some(sandbox.issue_token(user));
        let metrics: Arc<dyn MetricsApi> = if sandbox.base_url().starts_with("https://") {
            let ca = sandbox.pki().cluster_ca.cert_der.clone();
            Arc::new(HttpMetrics::https(sandbox.addr(), ca, token)?)
        } else {
            Arc::new(HttpMetrics::http(sandbox.addr(), token))
        };
        Ok(Self::new(sandbox.store().clone(), config, Some(metrics)))
    }

    /// One pass of every controller.
    pub async fn sync_once(&self) {
        // The workload pass is synchronous, and over 10,000 Deployments and ReplicaSets it
        // takes tens of milliseconds. On a multi-threaded runtime it gives its worker up first
        // (`block_in_place`): a request task in that worker's LIFO slot, which no other worker
        // can steal, would wait behind the whole pass (benches/operator_scale.rs: 5 % of
        // activations 20–80 ms late at N = 10,000). A current-thread runtime (tests on a
        // virtual clock) cannot do that, and runs it in place.
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(|| self.sync_workloads());
        } else {
            self.sync_workloads();
        }
        if let Some(hpa) = &self.hpa {
            hpa.sync_due().await;
        }
    }

    /// Workloads, kubelet and statuses, unless the last pass settled and no input has changed
    /// since.
    fn sync_workloads(&self) {
        let inputs_at = self.store.last_change(&self.inputs);
        let mut settled_at = self.settled_at.lock().unwrap_or_else(|e| e.into_inner());
        if *settled_at == Some(inputs_at) {
            return;
        }
        let mut visited = self.visited.lock().unwrap_or_else(|e| e.into_inner());
        self.reconcile_workloads(&mut visited);
        let pods_waiting = pods::kubelet_sync(&self.store, &self.config.pods);
        let statuses_waiting = self.refresh_statuses(&mut visited);
        visited.finish();
        let changed = self.store.last_change(&self.inputs) != inputs_at;
        *settled_at = (!changed && !pods_waiting && !statuses_waiting).then_some(inputs_at);
    }

    /// Spec → children: Deployments create/scale ReplicaSets, the others create/delete pods.
    fn reconcile_workloads(&self, visited: &mut Visited) {
        let store = &*self.store;
        let ev = &self.events;
        let sets = OwnerIndex::build(store, &replicaset::replicasets());
        for d in store.list(&deployment::deployments(), None).0 {
            let owned = sets.owned(&d).iter().map(|rs| &**rs);
            if !visited.unchanged(Step::DeploymentSets, &d, owned) {
                deployment::reconcile(store, &ev.deployment, &sets, &d);
            }
        }
        // Pods are listed once for all owners: each owner only touches its own pods.
        let owned_pods = OwnerIndex::build(store, &pods::pods());
        for rs in store.list(&replicaset::replicasets(), None).0 {
            let owned = owned_pods.owned(&rs).iter().map(|p| &**p);
            if !visited.unchanged(Step::ReplicaSetPods, &rs, owned) {
                replicaset::reconcile(store, &ev.replicaset, &owned_pods, &rs);
            }
        }
        for s in store.list(&statefulset::statefulsets(), None).0 {
            statefulset::reconcile(store, &ev.statefulset, &owned_pods, &s);
        }
        for j in store.list(&job::jobs(), None).0 {
            job::reconcile(store, &ev.job, &owned_pods, &j);
        }
    }

    /// Children → status, from fresh reads so this pass's pod changes show at once. Returns
    /// whether some status will change with time alone.
    fn refresh_statuses(&self, visited: &mut Visited) -> bool {
        let store = &*self.store;
        let sets = OwnerIndex::build(store, &replicaset::replicasets());
        let owned_pods = OwnerIndex::build(store, &pods::pods());
        let mut waiting = false;
        for rs in store.list(&replicaset::replicasets(), None).0 {
            let pods = owned_pods.owned(&rs).iter().map(|p| &**p);
            if visited.unchanged(Step::ReplicaSetStatus, &rs, pods) {
                continue;
            }
            if replicaset::refresh_status(store, &owned_pods, &rs) {
                waiting = true;
                visited.waiting(Step::ReplicaSetStatus, &rs);
            }
        }
        let owned = deployment::Owned {
            sets: &sets,
            pods: &owned_pods,
        };
        for d in store.list(&deployment::deployments(), None).0 {
            let children = sets.owned(&d).iter().flat_map(|rs| {
                std::iter::once(&**rs).chain(owned_pods.owned(rs).iter().map(|p| &**p))
            });
            if visited.unchanged(Step::DeploymentStatus, &d, children) {
                continue;
            }
            if deployment::refresh_status(store, &owned, &d) {
                waiting = true;
                visited.waiting(Step::DeploymentStatus, &d);
            }
        }
        for s in store.list(&statefulset::statefulsets(), None).0 {
            waiting |= statefulset::refresh_status(store, &owned_pods, &s);
        }
        for j in store.list(&job::jobs(), None).0 {
            job::refresh_status(store, &self.events.job, &owned_pods, &j);
        }
        waiting
    }

    /// Runs [`Controllers::sync_once`] every tick until `shutdown` is cancelled.
    pub fn spawn(self, clock: &ClockHandle, shutdown: CancellationToken) -> JoinHandle<()> {
        // Created here, not in the task, so a virtual clock counts the loop as busy at once.
        let mut ticker = clock.ticker(self.config.tick);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => self.sync_once().await,
                }
            }
        })
    }
}
