//! `BERTH_<SECTION>_<KEY>` environment overrides.

use crate::{Config, ConfigError};

impl Config {
    /// Applies `BERTH_<SECTION>_<KEY>` overrides, plus the short aliases the
    /// documentation promises (`BERTH_UPSTREAM_USER`, `BERTH_UPSTREAM_PASSWORD`).
    pub fn apply_env(
        &mut self,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let mut tree =
            toml::Value::try_from(&*self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut changed = false;
        for (var, value) in vars {
            let Some((section, key)) = env_target(&var) else {
                continue;
            };
            let Some(table) = tree.get_mut(&section).and_then(|t| t.as_table_mut()) else {
                continue;
            };
            let current = table.get(&key).cloned();
            let parsed = parse_env_value(var, value, &current)?;
            if current.is_none() && !KNOWN_OPTIONAL_KEYS.contains(&(section.as_str(), key.as_str()))
            {
                // Not a key of this section: ignore rather than fail, so unrelated
                // BERTH_* variables (BERTH_ADMIN_PASSWORD, ...) pass through.
                continue;
            }
            table.insert(key, parsed);
            changed = true;
        }
        if changed {
            *self = tree
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Env {
                    var: "BERTH_*".into(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }
}

/// The (section, key) a `BERTH_*` variable names, after the short aliases and
/// renamed keys; `None` for any other variable.
fn env_target(var: &str) -> Option<(String, String)> {
    let rest = var.strip_prefix("BERTH_")?;
    let rest = rest.to_ascii_lowercase();
    let (section, key) = match rest.as_str() {
        "upstream_user" => ("edge".to_string(), "upstream_user".to_string()),
        "upstream_password" => ("edge".to_string(), "upstream_password".to_string()),
        _ => match rest.split_once('_') {
            Some((s, k)) => (s.to_string(), k.to_string()),
            None => return None,
        },
    };
    let key = RENAMED_KEYS
        .iter()
        .find(|(s, old, _)| *s == section && *old == key)
        .map(|(_, _, new)| new.to_string())
        .unwrap_or(key);
    Some((section, key))
}

/// The variable's value as the kind of value the key holds now (a string if
/// it has none).
fn parse_env_value(
    var: String,
    value: String,
    current: &Option<toml::Value>,
) -> Result<toml::Value, ConfigError> {
    let parsed = match current {
        Some(toml::Value::String(_)) | None => toml::Value::String(value.clone()),
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(value.trim().parse().map_err(|_| ConfigError::Env {
                var: var.clone(),
                message: format!("{value:?} is not a whole number"),
            })?)
        }
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(match value.trim() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                return Err(ConfigError::Env {
                    var,
                    message: format!("{value:?} is not a boolean (true/false)"),
                })
            }
        }),
        Some(toml::Value::Table(_)) => {
            let mut t = toml::map::Map::new();
            for pair in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(ConfigError::Env {
                        var,
                        message: format!("{pair:?} is not KEY=VALUE"),
                    });
                };
                t.insert(k.trim().into(), toml::Value::String(v.trim().into()));
            }
            toml::Value::Table(t)
        }
        Some(toml::Value::Array(_)) => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        Some(_) => toml::Value::String(value.clone()),
    };
    Ok(parsed)
}

/// Keys that were renamed: (section, old name, new name). Files accept the old
/// names as serde aliases; environment variables are mapped here.
const RENAMED_KEYS: &[(&str, &str, &str)] = &[
    ("auth", "max_failed_logins", "account_failure_threshold"),
    ("auth", "lockout_window", "failure_window"),
];

/// Optional keys that are absent from the serialized defaults (None) but may be set from the environment.
const KNOWN_OPTIONAL_KEYS: &[(&str, &str)] = &[
    ("server", "tls_cert"),
    ("server", "tls_key"),
    ("controller", "manifests_dir"),
    ("quota", "default_project"),
    ("proxy", "capacity"),
];
