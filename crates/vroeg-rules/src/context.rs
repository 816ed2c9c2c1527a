//! The evalexpr context rules are evaluated in: the catalogue variables of
//! one household, read-only, with evalexpr's builtin functions available.

use std::sync::OnceLock;

use evalexpr::{Context, EvalexprError, EvalexprResult, Value};
use rustc_hash::FxHashMap;
use vroeg_core::vars::{catalogue, VarValue, Variables};

/// Name to catalogue index, built once. (FxHash: rules look a name up for
/// every variable they read, for every household they are evaluated on.)
pub fn index() -> &'static FxHashMap<&'static str, usize> {
    static INDEX: OnceLock<FxHashMap<&'static str, usize>> = OnceLock::new();
    INDEX.get_or_init(|| {
        catalogue()
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.as_str(), i))
            .collect()
    })
}

pub fn to_value(v: VarValue) -> Value {
    match v {
        VarValue::Bool(b) => Value::Boolean(b),
        VarValue::Int(i) => Value::Int(i),
        VarValue::Float(f) => Value::Float(f),
    }
}

pub struct VarContext {
    values: Vec<Value>,
}

impl VarContext {
    pub fn new(vars: &Variables) -> Self {
        VarContext {
            values: vars.values.iter().copied().map(to_value).collect(),
        }
    }
}

impl Context for VarContext {
    fn get_value(&self, identifier: &str) -> Option<&Value> {
        index().get(identifier).map(|i| &self.values[*i])
    }

    fn call_function(&self, identifier: &str, _argument: &Value) -> EvalexprResult<Value> {
        Err(EvalexprError::FunctionIdentifierNotFound(
            identifier.to_owned(),
        ))
    }

    fn are_builtin_functions_disabled(&self) -> bool {
        false
    }

    fn set_builtin_functions_disabled(&mut self, _disabled: bool) -> EvalexprResult<()> {
        Err(EvalexprError::ContextNotMutable)
    }
}
