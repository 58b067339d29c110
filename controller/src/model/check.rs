//! Reporting every problem with a value a person sent, at once.
//!
//! Owns: `ValidationError` and the `Check` collector the other model modules
//! fill, field by field. Must not touch: the rules themselves.

use std::fmt;

/// One or more problems with a value a person sent, each naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct ValidationError {
    pub problems: Vec<String>,
}

impl ValidationError {
    pub fn one(field: &str, message: impl fmt::Display) -> Self {
        Self {
            problems: vec![format!("{field}: {message}")],
        }
    }
}

/// Collects problems so one request reports all of them at once.
#[derive(Default)]
pub(super) struct Check {
    problems: Vec<String>,
}

impl Check {
    pub(super) fn fail(&mut self, field: impl fmt::Display, message: impl fmt::Display) {
        self.problems.push(format!("{field}: {message}"));
    }
    pub(super) fn check(&mut self, field: impl fmt::Display, result: Result<(), String>) {
        if let Err(message) = result {
            self.fail(field, message);
        }
    }
    pub(super) fn finish(self) -> Result<(), ValidationError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                problems: self.problems,
            })
        }
    }
}

/// `a, b, c`, or `none` for no items.
pub(super) fn list_or_none<'a>(items: impl Iterator<Item = &'a &'a str>) -> String {
    let v: Vec<&str> = items.copied().collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
