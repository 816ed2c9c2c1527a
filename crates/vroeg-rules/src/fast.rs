//! Rule conditions evaluated without evalexpr's allocations.
//!
//! evalexpr evaluates a tree by collecting each node's arguments into a new
//! `Vec`, and converts every catalogue variable into its `Value` first: a
//! dozen allocations per rule per household. Conditions built only of
//! catalogue variables, numbers, booleans and the arithmetic, comparison and
//! logical operators (all of the shipped rules) are compiled here into a
//! [`Condition`] that reads the variables in place and allocates nothing.
//!
//! It gives what evalexpr 11.3.1 gives, operator by operator: both operands
//! are always evaluated (evalexpr does not short-circuit), integers stay
//! integers until a float joins them, `==` of an integer and a float is
//! false, and integer overflow or division by zero is an error. Where
//! evalexpr would fail, [`Condition::eval`] says `None`, and the caller
//! asks evalexpr, so that errors keep evalexpr's wording. Anything else
//! (functions, strings, tuples, assignments, unknown names) is not compiled
//! at all. A test compares both over generated expressions.

use evalexpr::{Node, Operator, Value};
use vroeg_core::vars::{VarValue, Variables};

/// A compiled condition.
#[derive(Clone, Debug)]
pub struct Condition(Expr);

#[derive(Clone, Debug)]
enum Expr {
    Const(VarValue),
    /// A catalogue variable, by index.
    Var(usize),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Neq,
    Lt,
    Leq,
    Gt,
    Geq,
    And,
    Or,
}

impl Condition {
    /// `node` compiled, if it is built only of what this module evaluates.
    pub fn compile(node: &Node) -> Option<Condition> {
        match (node.operator(), node.children()) {
            (Operator::RootNode, [child]) => expr(child).map(Condition),
            _ => None,
        }
    }

    /// The condition's truth for `vars`; `None` where evalexpr would fail
    /// (a type mismatch, an overflow, a division by zero, or a value that
    /// is not a boolean).
    pub fn eval(&self, vars: &Variables) -> Option<bool> {
        match eval(&self.0, vars)? {
            VarValue::Bool(b) => Some(b),
            _ => None,
        }
    }
}

fn expr(node: &Node) -> Option<Expr> {
    let children = node.children();
    let binary = |op: Op| match children {
        [a, b] => Some(Expr::Binary(op, Box::new(expr(a)?), Box::new(expr(b)?))),
        _ => None,
    };
    let unary = |make: fn(Box<Expr>) -> Expr| match children {
        [a] => Some(make(Box::new(expr(a)?))),
        _ => None,
    };
    match node.operator() {
        // Parentheses: the value of what they hold.
        Operator::RootNode => match children {
            [inner] => expr(inner),
            _ => None,
        },
        Operator::Const { value } if children.is_empty() => match value {
            Value::Boolean(b) => Some(Expr::Const(VarValue::Bool(*b))),
            Value::Int(i) => Some(Expr::Const(VarValue::Int(*i))),
            Value::Float(f) => Some(Expr::Const(VarValue::Float(*f))),
            _ => None,
        },
        Operator::VariableIdentifierRead { identifier } if children.is_empty() => {
            crate::context::index()
                .get(identifier.as_str())
                .map(|i| Expr::Var(*i))
        }
        Operator::Not => unary(Expr::Not),
        Operator::Neg => unary(Expr::Neg),
        Operator::Add => binary(Op::Add),
        Operator::Sub => binary(Op::Sub),
        Operator::Mul => binary(Op::Mul),
        Operator::Div => binary(Op::Div),
        Operator::Mod => binary(Op::Mod),
        Operator::Eq => binary(Op::Eq),
        Operator::Neq => binary(Op::Neq),
        Operator::Lt => binary(Op::Lt),
        Operator::Leq => binary(Op::Leq),
        Operator::Gt => binary(Op::Gt),
        Operator::Geq => binary(Op::Geq),
        Operator::And => binary(Op::And),
        Operator::Or => binary(Op::Or),
        _ => None,
    }
}

fn number(v: VarValue) -> Option<f64> {
    match v {
        VarValue::Int(i) => Some(i as f64),
        VarValue::Float(f) => Some(f),
        VarValue::Bool(_) => None,
    }
}

fn boolean(v: VarValue) -> Option<bool> {
    match v {
        VarValue::Bool(b) => Some(b),
        _ => None,
    }
}

fn eval(e: &Expr, vars: &Variables) -> Option<VarValue> {
    use VarValue::{Bool, Float, Int};
    Some(match e {
        Expr::Const(v) => *v,
        Expr::Var(i) => *vars.values.get(*i)?,
        Expr::Not(a) => Bool(!boolean(eval(a, vars)?)?),
        Expr::Neg(a) => match eval(a, vars)? {
            Int(i) => Int(i.checked_neg()?),
            Float(f) => Float(-f),
            Bool(_) => return None,
        },
        Expr::Binary(op, a, b) => {
            let (a, b) = (eval(a, vars)?, eval(b, vars)?);
            match op {
                // Value's derived equality: another variant is unequal.
                Op::Eq => Bool(same(a, b)),
                Op::Neq => Bool(!same(a, b)),
                Op::And => Bool(boolean(a)? & boolean(b)?),
                Op::Or => Bool(boolean(a)? | boolean(b)?),
                Op::Lt | Op::Leq | Op::Gt | Op::Geq => {
                    let (x, y) = (number(a)?, number(b)?);
                    let ord = match (a, b) {
                        (Int(i), Int(j)) => i.partial_cmp(&j),
                        _ => x.partial_cmp(&y),
                    };
                    Bool(match op {
                        Op::Lt => ord.is_some_and(|o| o.is_lt()),
                        Op::Leq => ord.is_some_and(|o| o.is_le()),
                        Op::Gt => ord.is_some_and(|o| o.is_gt()),
                        _ => ord.is_some_and(|o| o.is_ge()),
                    })
                }
                Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod => {
                    let (x, y) = (number(a)?, number(b)?);
                    match (a, b) {
                        (Int(i), Int(j)) => Int(match op {
                            Op::Add => i.checked_add(j),
                            Op::Sub => i.checked_sub(j),
                            Op::Mul => i.checked_mul(j),
                            Op::Div => i.checked_div(j),
                            _ => i.checked_rem(j),
                        }?),
                        _ => Float(match op {
                            Op::Add => x + y,
                            Op::Sub => x - y,
                            Op::Mul => x * y,
                            Op::Div => x / y,
                            _ => x % y,
                        }),
                    }
                }
            }
        }
    })
}

/// evalexpr's `Value` equality over the values a condition can hold.
fn same(a: VarValue, b: VarValue) -> bool {
    match (a, b) {
        (VarValue::Bool(x), VarValue::Bool(y)) => x == y,
        (VarValue::Int(x), VarValue::Int(y)) => x == y,
        (VarValue::Float(x), VarValue::Float(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::VarContext;
    use vroeg_core::vars::{catalogue, VarType};

    /// A small deterministic generator (no dependency for a test).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[(self.next() % items.len() as u64) as usize]
        }
    }

    fn leaf(rng: &mut Rng, names: &[&str]) -> String {
        let consts = [
            "0",
            "1",
            "2",
            "-1",
            "27",
            "150",
            "0.5",
            "2.0",
            "-0.0",
            "1e300",
            "true",
            "false",
            "9223372036854775807",
            "\"tekst\"",
        ];
        if rng.next().is_multiple_of(2) {
            (*rng.pick(names)).to_owned()
        } else {
            (*rng.pick(&consts)).to_owned()
        }
    }

    fn gen(rng: &mut Rng, names: &[&str], depth: u32) -> String {
        if depth == 0 || rng.next().is_multiple_of(4) {
            return leaf(rng, names);
        }
        let ops = [
            "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "^",
        ];
        match rng.next() % 8 {
            0 => format!("!({})", gen(rng, names, depth - 1)),
            1 => format!("-({})", gen(rng, names, depth - 1)),
            2 => format!("min({}, {})", leaf(rng, names), leaf(rng, names)),
            _ => format!(
                "({}) {} ({})",
                gen(rng, names, depth - 1),
                rng.pick(&ops),
                gen(rng, names, depth - 1)
            ),
        }
    }

    fn variables(rng: &mut Rng) -> Variables {
        let ints = [0i64, 1, 2, -1, 27, 150, i64::MAX, i64::MIN];
        let floats = [0.0, 0.5, 2.0, -0.0, 150.0, f64::NAN, 1e300];
        Variables {
            values: catalogue()
                .iter()
                .map(|v| match v.ty {
                    VarType::Bool => VarValue::Bool(rng.next().is_multiple_of(2)),
                    VarType::Int => VarValue::Int(*rng.pick(&ints)),
                    VarType::Float => VarValue::Float(*rng.pick(&floats)),
                })
                .collect(),
        }
    }

    /// Over generated expressions and variables, a compiled condition says
    /// what evalexpr says, and `None` exactly where evalexpr fails.
    #[test]
    fn compiled_conditions_give_what_evalexpr_gives() {
        let names: Vec<&str> = catalogue().iter().map(|v| v.name.as_str()).collect();
        let mut rng = Rng(0x5eed_cafe_f00d_d00d);
        let (mut compiled, mut agreed_true, mut agreed_error) = (0, 0, 0);
        for _ in 0..10_000 {
            let text = gen(&mut rng, &names, 4);
            let Ok(node) = evalexpr::build_operator_tree(&text) else {
                continue;
            };
            let Some(condition) = Condition::compile(&node) else {
                continue;
            };
            compiled += 1;
            for _ in 0..8 {
                let vars = variables(&mut rng);
                let slow = node.eval_boolean_with_context(&VarContext::new(&vars)).ok();
                assert_eq!(condition.eval(&vars), slow, "{text} with {vars:?}");
                agreed_true += usize::from(slow == Some(true));
                agreed_error += usize::from(slow.is_none());
            }
        }
        // The generator reaches every outcome.
        assert!(
            compiled > 1000 && agreed_true > 1000 && agreed_error > 1000,
            "{compiled} compiled, {agreed_true} true, {agreed_error} errors"
        );
    }

    #[test]
    fn functions_strings_and_unknown_names_are_left_to_evalexpr() {
        for text in [
            "min(leeftijd, 3) > 1",
            "\"a\" == \"a\"",
            "onbekend > 1",
            "a = 1",
            "leeftijd > 1; crisis",
            "(1, 2) == (1, 2)",
        ] {
            let node = evalexpr::build_operator_tree(text).unwrap();
            assert!(Condition::compile(&node).is_none(), "{text}");
        }
        let node = evalexpr::build_operator_tree("leeftijd > 0 && leeftijd < 27").unwrap();
        assert!(Condition::compile(&node).is_some());
    }
}
