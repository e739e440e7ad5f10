//! Static type check and evaluation of a parsed formula, with expr-lang's semantics.
//!
//! Values are expr-lang's: `int` (Go's 64-bit `int`, wrapping on overflow), `float64`, `bool`
//! and `nil`. Trigger values are `float64` (KEDA's environment is a `map[string]float64`), or
//! `nil` for a trigger that failed. The rules that matter for scaling formulas:
//! - `+ - *` keep ints as ints and give a float when either side is a float;
//! - `/` always gives a float, so `1 / 0` is `+Inf` and `0 / 0` is `NaN` (no error);
//! - `%` takes ints only, and `n % 0` is an error ("integer divide by zero");
//! - `**` and `^` always give a float (`math.Pow`);
//! - `ceil`, `floor`, `round` give floats, `int` truncates toward zero, `min`/`max` return the
//!   winning argument unchanged;
//! - `&&`, `||`, `!` and the ternary's condition take bools only; `a ?? b` is `b` when `a` is nil;
//! - anything else on nil is an error: a failed trigger only gets through a `??`.

use super::formula::FormulaError;
use super::parser::{BinOp, Builtin, Kind, Node, UnOp};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// A runtime value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    /// Go's `int`: 64 bits, wrapping on overflow.
    Int(i64),
    /// Go's `float64`: what trigger values are.
    Float(f64),
    /// A comparison's or a logical operator's result.
    Bool(bool),
    /// A failed trigger, or the `nil` literal.
    Nil,
}

impl Value {
    /// expr-lang (Go) type names, as its error messages print them.
    fn type_name(self) -> &'static str {
        match self {
            Self::Int(_) => "int",
            Self::Float(_) => "float64",
            Self::Bool(_) => "bool",
            Self::Nil => "nil",
        }
    }

    /// The value as a float, if it is a number.
    fn as_f64(self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(i as f64),
            Self::Float(f) => Some(f),
            Self::Bool(_) | Self::Nil => None,
        }
    }
}

/// What the checker knows of an expression's type before running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    /// An int literal, or arithmetic on ints only.
    Int,
    /// A trigger (KEDA declares them `float64`), a float literal, `/`, `**`, `ceil`, ….
    Float,
    /// Comparisons and logic.
    Bool,
    /// The `nil` literal.
    Nil,
    /// Decided at run time (a ternary with branches of different types, `??` of two kinds).
    Unknown,
}

impl Ty {
    /// The name expr-lang's messages use.
    fn name(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Float => "float64",
            Self::Bool => "bool",
            Self::Nil => "nil",
            Self::Unknown => "unknown",
        }
    }
    /// Could be a number (unknown types get the benefit of the doubt, as in expr-lang).
    fn numeric(self) -> bool {
        matches!(self, Self::Int | Self::Float | Self::Unknown)
    }
    /// Could be a bool.
    fn boolean(self) -> bool {
        matches!(self, Self::Bool | Self::Unknown)
    }
}

fn type_error(column: usize, message: String) -> FormulaError {
    FormulaError::Type { column, message }
}

/// expr-lang's wording for an operator applied to types it does not take.
fn mismatch(op: &str, l: &str, r: &str) -> String {
    format!("invalid operation: {op} (mismatched types {l} and {r})")
}

/// expr-lang's checker, for the subset: rejects what can never work, whatever the triggers say.
pub(crate) fn check(node: &Node) -> Result<Ty, FormulaError> {
    let col = node.column;
    Ok(match &node.kind {
        Kind::Int(_) => Ty::Int,
        Kind::Float(_) => Ty::Float,
        Kind::Bool(_) => Ty::Bool,
        Kind::Nil => Ty::Nil,
        Kind::Name(_) => Ty::Float,
        Kind::Unary(op, a) => {
            let t = check(a)?;
            match op {
                UnOp::Not if t.boolean() => Ty::Bool,
                UnOp::Neg | UnOp::Pos if t.numeric() => t,
                _ => {
                    let sym = if *op == UnOp::Not { "!" } else { "-" };
                    return Err(type_error(
                        col,
                        format!("invalid operation: {sym} (mismatched type {})", t.name()),
                    ));
                }
            }
        }
        Kind::Binary(op, a, b) => check_binary(*op, check(a)?, check(b)?, col)?,
        Kind::Cond(c, a, b) => {
            let tc = check(c)?;
            if !tc.boolean() {
                return Err(type_error(
                    c.column,
                    format!("non-bool expression (type {}) used as condition", tc.name()),
                ));
            }
            let (ta, tb) = (check(a)?, check(b)?);
            if ta == tb { ta } else { Ty::Unknown }
        }
        Kind::Call(f, args) => check_call(*f, args, col)?,
    })
}

/// The type of `l op r`, or the error expr-lang's checker gives. Arithmetic keeps ints only when
/// both sides are ints; `/` and `**` are always floats; `%` wants ints; `==` accepts any two
/// numbers, nil with anything, or two values of the same type.
fn check_binary(op: BinOp, l: Ty, r: Ty, col: usize) -> Result<Ty, FormulaError> {
    let err = || Err(type_error(col, mismatch(op.symbol(), l.name(), r.name())));
    let unknown = l == Ty::Unknown || r == Ty::Unknown;
    Ok(match op {
        BinOp::Or | BinOp::And if l.boolean() && r.boolean() => Ty::Bool,
        BinOp::Eq | BinOp::Ne => {
            let comparable =
                unknown || l == Ty::Nil || r == Ty::Nil || l == r || (l.numeric() && r.numeric());
            if !comparable {
                return err();
            }
            Ty::Bool
        }
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge if l.numeric() && r.numeric() => Ty::Bool,
        BinOp::Add | BinOp::Sub | BinOp::Mul if l.numeric() && r.numeric() => match (l, r) {
            _ if unknown => Ty::Unknown,
            (Ty::Int, Ty::Int) => Ty::Int,
            _ => Ty::Float,
        },
        BinOp::Div | BinOp::Pow if l.numeric() && r.numeric() => Ty::Float,
        BinOp::Mod if matches!(l, Ty::Int | Ty::Unknown) && matches!(r, Ty::Int | Ty::Unknown) => {
            Ty::Int
        }
        BinOp::Coalesce => match (l, r) {
            (Ty::Nil, t) | (t, Ty::Nil) => t,
            _ if l == r => l,
            _ => Ty::Unknown,
        },
        _ => return err(),
    })
}

/// Arity and argument types of a builtin call, and the type it returns.
fn check_call(f: Builtin, args: &[Node], col: usize) -> Result<Ty, FormulaError> {
    let types = args.iter().map(check).collect::<Result<Vec<_>, _>>()?;
    let variadic = matches!(f, Builtin::Min | Builtin::Max);
    match (types.len(), variadic) {
        (0, _) => {
            return Err(type_error(
                col,
                format!("not enough arguments to call {}", f.name()),
            ));
        }
        (n, false) if n > 1 => {
            return Err(type_error(
                col,
                format!("too many arguments to call {}", f.name()),
            ));
        }
        _ => {}
    }
    // nil may only show up at run time (and then fails there); a bool never fits.
    if let Some((t, arg)) = types
        .iter()
        .zip(args)
        .find(|(t, _)| !t.numeric() && **t != Ty::Nil)
    {
        return Err(type_error(
            arg.column,
            format!("invalid argument for {} (type {})", f.name(), t.name()),
        ));
    }
    Ok(match f {
        Builtin::Abs => types[0],
        Builtin::Ceil | Builtin::Floor | Builtin::Round | Builtin::Float => Ty::Float,
        Builtin::Int => Ty::Int,
        Builtin::Min | Builtin::Max => {
            if types.iter().all(|t| *t == types[0]) {
                types[0]
            } else {
                Ty::Unknown
            }
        }
    })
}

/// Evaluates `node`; a name missing from `env` is nil, like a failed trigger.
pub(crate) fn eval(
    node: &Node,
    env: &BTreeMap<String, Option<f64>>,
) -> Result<Value, FormulaError> {
    let col = node.column;
    let fail = |message: String| FormulaError::Eval {
        column: col,
        message,
    };
    Ok(match &node.kind {
        Kind::Int(i) => Value::Int(*i),
        Kind::Float(f) => Value::Float(*f),
        Kind::Bool(b) => Value::Bool(*b),
        Kind::Nil => Value::Nil,
        // Absent and failed (None) triggers are both nil, as a missing key of expr-lang's
        // map environment is.
        Kind::Name(n) => env
            .get(n)
            .copied()
            .flatten()
            .map_or(Value::Nil, Value::Float),
        Kind::Unary(op, a) => match (op, eval(a, env)?) {
            (UnOp::Not, Value::Bool(b)) => Value::Bool(!b),
            (UnOp::Neg, Value::Int(i)) => Value::Int(i.wrapping_neg()),
            (UnOp::Neg, Value::Float(f)) => Value::Float(-f),
            (UnOp::Pos, v @ (Value::Int(_) | Value::Float(_))) => v,
            (op, v) => {
                let sym = if *op == UnOp::Not { "!" } else { "-" };
                return Err(fail(format!(
                    "invalid operation: {sym} (mismatched type {})",
                    v.type_name()
                )));
            }
        },
        Kind::Binary(op @ (BinOp::And | BinOp::Or), a, b) => return logic(*op, col, a, b, env),
        // `??` only runs its right side when the left is nil.
        Kind::Binary(BinOp::Coalesce, a, b) => match eval(a, env)? {
            Value::Nil => eval(b, env)?,
            v => v,
        },
        Kind::Binary(op, a, b) => arith(*op, eval(a, env)?, eval(b, env)?).map_err(fail)?,
        Kind::Cond(c, a, b) => match eval(c, env)? {
            Value::Bool(true) => eval(a, env)?,
            Value::Bool(false) => eval(b, env)?,
            v => {
                return Err(FormulaError::Eval {
                    column: c.column,
                    message: format!(
                        "non-bool expression (type {}) used as condition",
                        v.type_name()
                    ),
                });
            }
        },
        Kind::Call(f, args) => {
            let values = args
                .iter()
                .map(|a| eval(a, env))
                .collect::<Result<Vec<_>, _>>()?;
            call(*f, &values).map_err(fail)?
        }
    })
}

/// `&&` and `||`, short-circuiting like expr-lang (the right side is not run when not needed).
fn logic(
    op: BinOp,
    column: usize,
    a: &Node,
    b: &Node,
    env: &BTreeMap<String, Option<f64>>,
) -> Result<Value, FormulaError> {
    let as_bool = |v: Value| match v {
        Value::Bool(b) => Ok(b),
        v => Err(FormulaError::Eval {
            column,
            message: mismatch(op.symbol(), v.type_name(), "bool"),
        }),
    };
    let left = as_bool(eval(a, env)?)?;
    if (op == BinOp::And) != left {
        // false && … is false, true || … is true.
        return Ok(Value::Bool(left));
    }
    Ok(Value::Bool(as_bool(eval(b, env)?)?))
}

/// Every binary operator but the lazy ones (`&&`, `||`, `??`), on two evaluated operands. The
/// error is the message only: `eval` adds the column.
fn arith(op: BinOp, l: Value, r: Value) -> Result<Value, String> {
    use Value::{Float, Int};
    let err = || Err(mismatch(op.symbol(), l.type_name(), r.type_name()));
    Ok(match op {
        BinOp::Eq => Value::Bool(equal(l, r)),
        BinOp::Ne => Value::Bool(!equal(l, r)),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let Some(ord) = compare(l, r) else {
                // NaN is unordered: every comparison is false. Anything else is a type error.
                if l.as_f64().is_some() && r.as_f64().is_some() {
                    return Ok(Value::Bool(false));
                }
                return err();
            };
            Value::Bool(match op {
                BinOp::Lt => ord == Ordering::Less,
                BinOp::Le => ord != Ordering::Greater,
                BinOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            })
        }
        BinOp::Add | BinOp::Sub | BinOp::Mul => match (l, r) {
            (Int(a), Int(b)) => Int(match op {
                BinOp::Add => a.wrapping_add(b),
                BinOp::Sub => a.wrapping_sub(b),
                _ => a.wrapping_mul(b),
            }),
            _ => match (l.as_f64(), r.as_f64()) {
                (Some(a), Some(b)) => Float(match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    _ => a * b,
                }),
                _ => return err(),
            },
        },
        BinOp::Div | BinOp::Pow => match (l.as_f64(), r.as_f64()) {
            (Some(a), Some(b)) if op == BinOp::Div => Float(a / b),
            (Some(a), Some(b)) => Float(a.powf(b)),
            _ => return err(),
        },
        BinOp::Mod => match (l, r) {
            (Int(_), Int(0)) => return Err("integer divide by zero".to_string()),
            (Int(a), Int(b)) => Int(a.wrapping_rem(b)),
            _ => return err(),
        },
        // Handled (lazily) by `eval`.
        BinOp::And | BinOp::Or | BinOp::Coalesce => return err(),
    })
}

/// expr-lang's `runtime.Equal`: numbers by value across int/float, nil only equals nil.
fn equal(l: Value, r: Value) -> bool {
    match (l, r) {
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Nil, Value::Nil) => true,
        _ => match (l.as_f64(), r.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
    }
}

/// Orders two numbers (ints exactly, anything else as floats); None for NaN or a non-number.
fn compare(l: Value, r: Value) -> Option<Ordering> {
    match (l, r) {
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(&b)),
        _ => l.as_f64()?.partial_cmp(&r.as_f64()?),
    }
}

/// Go's `int(f)` on amd64: truncation toward zero; NaN and out-of-range give the minimum int.
fn go_int(f: f64) -> i64 {
    // i64::MAX as f64 rounds up to 2^63, which is already out of range.
    if f.is_nan() || f >= i64::MAX as f64 || f < i64::MIN as f64 {
        i64::MIN
    } else {
        f as i64
    }
}

/// Runs a builtin on evaluated arguments, with expr-lang's result types (see the module doc).
fn call(f: Builtin, args: &[Value]) -> Result<Value, String> {
    let bad = |v: Value| format!("invalid argument for {} (type {})", f.name(), v.type_name());
    if matches!(f, Builtin::Min | Builtin::Max) {
        // expr-lang's minMax: a lone argument comes back as it is; otherwise every argument
        // must be a number and the first of the winners is kept.
        if let [only] = args {
            return Ok(*only);
        }
        let mut best: Option<Value> = None;
        for v in args {
            if v.as_f64().is_none() {
                return Err(bad(*v));
            }
            let wanted = if f == Builtin::Max {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            if best.is_none_or(|b| compare(b, *v) == Some(wanted)) {
                best = Some(*v);
            }
        }
        return best.ok_or_else(|| format!("not enough arguments to call {}", f.name()));
    }
    let [v] = args else {
        return Err(format!("{} takes exactly one argument", f.name()));
    };
    Ok(match (f, *v) {
        (Builtin::Abs, Value::Int(i)) => Value::Int(i.wrapping_abs()),
        // Go's `if x < 0 { return -x }`: keeps -0.0 and NaN as they are.
        (Builtin::Abs, Value::Float(x)) => Value::Float(if x < 0.0 { -x } else { x }),
        (Builtin::Ceil, v) => Value::Float(v.as_f64().ok_or_else(|| bad(v))?.ceil()),
        (Builtin::Floor, v) => Value::Float(v.as_f64().ok_or_else(|| bad(v))?.floor()),
        // Go's math.Round: half away from zero, as Rust's f64::round.
        (Builtin::Round, v) => Value::Float(v.as_f64().ok_or_else(|| bad(v))?.round()),
        (Builtin::Float, v) => Value::Float(
            v.as_f64()
                .ok_or_else(|| format!("invalid operation: float({})", v.type_name()))?,
        ),
        (Builtin::Int, Value::Int(i)) => Value::Int(i),
        (Builtin::Int, Value::Float(x)) => Value::Int(go_int(x)),
        (Builtin::Int, v) => return Err(format!("invalid operation: int({})", v.type_name())),
        (_, v) => return Err(bad(v)),
    })
}
