//! Scaling modifiers at run time (`reference/keda.md` §2.7): the formula over named triggers
//! becomes one `composite-metric`, active above `activationTarget`. Failed triggers are fed to
//! the formula as nil, so `??` can stand in for them.

use std::collections::BTreeMap;

use crate::crd::ScaledObject;
use crate::modifiers::{Formula, FormulaError};

/// The compiled modifiers of one ScaledObject.
#[derive(Debug)]
pub struct CompositeMetric {
    formula: Formula,
    activation_target: f64,
}

/// What the formula made of one poll.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompositeValue {
    /// The composite value (None when the formula yields nil).
    pub value: Option<f64>,
    /// `value > activationTarget`.
    pub active: bool,
}

impl CompositeMetric {
    /// Compile `so`'s modifiers, if it has a formula. Names are its named triggers.
    pub fn of(so: &ScaledObject) -> Option<Result<Self, FormulaError>> {
        let modifiers = so.spec.advanced.as_ref()?.scaling_modifiers.as_ref()?;
        let source = modifiers
            .formula
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())?;
        let names: Vec<&str> = so
            .spec
            .triggers
            .iter()
            .filter_map(|t| t.name.as_deref())
            .collect();
        let activation_target = modifiers
            .activation_target
            .as_deref()
            .and_then(|a| a.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        Some(Formula::compile(source, &names).map(|formula| Self {
            formula,
            activation_target,
        }))
    }

    /// Evaluate over the named triggers' values (`None` for a trigger that failed).
    pub fn evaluate(
        &self,
        values: &BTreeMap<String, Option<f64>>,
    ) -> Result<CompositeValue, FormulaError> {
        let value = self.formula.eval(values)?;
        Ok(CompositeValue {
            value,
            active: value.is_some_and(|v| v > self.activation_target),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn so(modifiers: &str) -> ScaledObject {
        let yaml = format!(
            "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: a}}\nspec:\n  scaleTargetRef: {{name: a}}\n  advanced:\n    scalingModifiers: {modifiers}\n  triggers:\n    - {{type: rabbitmq, name: queue, metadata: {{}}}}\n    - {{type: kafka, name: lag, metadata: {{}}}}\n"
        );
        serde_yaml_ng::from_str(&yaml).unwrap()
    }

    fn values(queue: Option<f64>, lag: Option<f64>) -> BTreeMap<String, Option<f64>> {
        BTreeMap::from([("queue".to_owned(), queue), ("lag".to_owned(), lag)])
    }

    #[test]
    fn composite_is_active_above_the_activation_target() {
        let composite = CompositeMetric::of(&so(
            "{formula: 'max(queue, lag / 2)', target: '5', activationTarget: '3'}",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            composite.evaluate(&values(Some(2.0), Some(10.0))).unwrap(),
            CompositeValue {
                value: Some(5.0),
                active: true
            }
        );
        assert_eq!(
            composite.evaluate(&values(Some(1.0), Some(4.0))).unwrap(),
            CompositeValue {
                value: Some(2.0),
                active: false
            }
        );
    }

    #[test]
    fn failed_triggers_are_nil_for_the_formula() {
        let composite = CompositeMetric::of(&so("{formula: 'queue ?? 7', target: '5'}"))
            .unwrap()
            .unwrap();
        assert_eq!(
            composite.evaluate(&values(None, Some(1.0))).unwrap().value,
            Some(7.0)
        );
        let strict = CompositeMetric::of(&so("{formula: 'queue + lag', target: '5'}"))
            .unwrap()
            .unwrap();
        assert!(
            strict.evaluate(&values(None, Some(1.0))).is_err(),
            "nil without ?? is an error"
        );
    }

    #[test]
    fn no_formula_no_composite() {
        assert!(CompositeMetric::of(&so("{target: '5'}")).is_none());
    }
}
