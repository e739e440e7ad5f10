//! Pausing by annotation (`reference/keda.md` §1.1): `autoscaling.keda.sh/paused` (any value
//! but `false`) or `autoscaling.keda.sh/paused-replicas: N` stop the scale loop and remove the
//! HPA; `paused-replicas` also holds the target at N. Removing the annotation resumes.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, DeleteParams};

use super::target::{Target, within_api_timeout};
use crate::crd::ScaledObject;
use crate::crd::names::{ANNOTATION_PAUSED, ANNOTATION_PAUSED_REPLICAS};

/// How an object is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Frozen at whatever replicas the target has.
    Frozen,
    /// Held at this replica count.
    At(i32),
}

impl Pause {
    /// The pause the annotations ask for, if any. An unparsable `paused-replicas` pauses
    /// without a count, which is safer than ignoring it.
    pub fn of(so: &ScaledObject) -> Option<Pause> {
        let annotations = so.metadata.annotations.as_ref()?;
        if let Some(replicas) = annotations.get(ANNOTATION_PAUSED_REPLICAS) {
            return Some(match replicas.trim().parse::<i32>() {
                Ok(n) if n >= 0 => Pause::At(n),
                _ => Pause::Frozen,
            });
        }
        annotations
            .get(ANNOTATION_PAUSED)
            .filter(|v| v.as_str() != "false")
            .map(|_| Pause::Frozen)
    }

    /// `status.pausedReplicaCount`.
    pub fn replicas(self) -> Option<i32> {
        match self {
            Pause::Frozen => None,
            Pause::At(n) => Some(n),
        }
    }
}

/// Delete the owned HPA; an HPA that is already gone is fine.
pub async fn delete_hpa(client: &kube::Client, so: &ScaledObject) -> Result<(), kube::Error> {
    let namespace = so.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
    let (name, params) = (so.hpa_name(), DeleteParams::default());
    let call = api.delete(&name, &params);
    match within_api_timeout(call).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Hold `target` at `replicas` when it is elsewhere.
pub async fn hold(
    client: &kube::Client,
    target: &Target,
    replicas: i32,
) -> Result<bool, super::target::TargetError> {
    if target.replicas(client).await? == replicas {
        return Ok(false);
    }
    target.scale_to(client, replicas).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn so(annotations: &[(&str, &str)]) -> ScaledObject {
        let mut so: ScaledObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "a"},
            "spec": {"scaleTargetRef": {"name": "a"}, "triggers": [{"type": "cron", "metadata": {}}]}}))
        .unwrap();
        so.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        );
        so
    }

    #[rstest]
    #[case::none(&[], None)]
    #[case::paused(&[("autoscaling.keda.sh/paused", "true")], Some(Pause::Frozen))]
    #[case::any_value_pauses(&[("autoscaling.keda.sh/paused", "yes")], Some(Pause::Frozen))]
    #[case::false_does_not(&[("autoscaling.keda.sh/paused", "false")], None)]
    #[case::replicas(&[("autoscaling.keda.sh/paused-replicas", "3")], Some(Pause::At(3)))]
    #[case::replicas_win(&[("autoscaling.keda.sh/paused", "false"), ("autoscaling.keda.sh/paused-replicas", "0")], Some(Pause::At(0)))]
    #[case::bad_replicas_still_pause(&[("autoscaling.keda.sh/paused-replicas", "many")], Some(Pause::Frozen))]
    #[case::scale_in_is_not_a_full_pause(&[("autoscaling.keda.sh/paused-scale-in", "true")], None)]
    fn annotations_decide_the_pause(
        #[case] annotations: &[(&str, &str)],
        #[case] expected: Option<Pause>,
    ) {
        assert_eq!(Pause::of(&so(annotations)), expected);
    }
}
