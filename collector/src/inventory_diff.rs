//! Configuration changes (CMDB): the difference between two inventory
//! snapshots of a host, as path / before / after rows. Lists are keyed by
//! their natural identity (a filesystem by mount point, a package by name,
//! an interface by name) so a reordering is not a change and a package
//! upgrade reads as one change, not a removal and an addition.

use std::collections::BTreeMap;

use serde_json::Value;

/// One changed fact. `before` is empty for an addition, `after` for a removal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// e.g. `os_version`, `packages[openssl].version`, `filesystems[/data]`.
    pub path: String,
    pub before: String,
    pub after: String,
}

/// Fields that change on every boot or every collection and are not
/// configuration.
const VOLATILE: &[&str] = &["boot_time_unix_s"];

/// The key that identifies an element of a list field.
fn list_key(field: &str) -> &'static str {
    match field {
        "filesystems" => "mount_point",
        "interfaces" | "packages" | "block_devices" => "name",
        _ => "",
    }
}

/// Changes from `old` to `new` (both inventory JSON objects), sorted by path.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    flatten("", old, &mut a);
    flatten("", new, &mut b);
    let mut out = Vec::new();
    for (path, before) in &a {
        match b.get(path) {
            Some(after) if after == before => {}
            Some(after) => out.push(Change {
                path: path.clone(),
                before: before.clone(),
                after: after.clone(),
            }),
            None => out.push(Change {
                path: path.clone(),
                before: before.clone(),
                after: String::new(),
            }),
        }
    }
    for (path, after) in &b {
        if !a.contains_key(path) {
            out.push(Change {
                path: path.clone(),
                before: String::new(),
                after: after.clone(),
            });
        }
    }
    out.sort_by(|x, y| x.path.cmp(&y.path));
    collapse_whole_items(out)
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if prefix.is_empty() && VOLATILE.contains(&k.as_str()) {
                    continue;
                }
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        Value::Array(items) => {
            let key = list_key(prefix.rsplit('.').next().unwrap_or(prefix));
            for (i, item) in items.iter().enumerate() {
                let id = item
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|s| !key.is_empty() && !s.is_empty())
                    .map(str::to_owned)
                    .unwrap_or_else(|| i.to_string());
                flatten(&format!("{prefix}[{id}]"), item, out);
            }
        }
        Value::Null => {}
        Value::String(s) if s.is_empty() => {}
        Value::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// An added or removed list element shows as one change named after the
/// element (`packages[curl]`), not one per field.
fn collapse_whole_items(changes: Vec<Change>) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    for c in changes {
        let item = c.path.find(']').map(|i| &c.path[..=i]);
        let whole = (c.before.is_empty() || c.after.is_empty()) && item.is_some();
        if whole {
            let item = item.unwrap_or_default().to_owned();
            let added = c.before.is_empty();
            if let Some(last) = out.last_mut()
                && last.path == item
            {
                let field = c.path[item.len()..].trim_start_matches('.').to_owned();
                let side = if added {
                    &mut last.after
                } else {
                    &mut last.before
                };
                if !side.is_empty() && !field.is_empty() {
                    side.push_str(", ");
                }
                side.push_str(&format!(
                    "{field}={}",
                    if added { &c.after } else { &c.before }
                ));
                continue;
            }
            let field = c.path[item.len()..].trim_start_matches('.').to_owned();
            let text = format!("{field}={}", if added { &c.after } else { &c.before });
            out.push(Change {
                path: item,
                before: if added { String::new() } else { text.clone() },
                after: if added { text } else { String::new() },
            });
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identical_inventories_have_no_changes() {
        let v = json!({"hostname": "a", "packages": [{"name": "curl", "version": "1"}]});
        assert!(diff(&v, &v).is_empty());
    }

    #[test]
    fn scalar_change_and_volatile_fields() {
        let a = json!({"os_version": "12", "boot_time_unix_s": 1, "memory_total_bytes": 100});
        let b = json!({"os_version": "12.5", "boot_time_unix_s": 2, "memory_total_bytes": 100});
        assert_eq!(
            diff(&a, &b),
            vec![Change {
                path: "os_version".into(),
                before: "12".into(),
                after: "12.5".into()
            }]
        );
    }

    #[test]
    fn package_upgrade_addition_and_removal_are_keyed_by_name() {
        let a = json!({"packages": [
            {"name": "curl", "version": "7.88", "arch": "amd64"},
            {"name": "telnet", "version": "0.17", "arch": "amd64"}
        ]});
        let b = json!({"packages": [
            {"name": "nginx", "version": "1.22", "arch": "amd64"},
            {"name": "curl", "version": "7.89", "arch": "amd64"}
        ]});
        let changes = diff(&a, &b);
        assert_eq!(
            changes,
            vec![
                Change {
                    path: "packages[curl].version".into(),
                    before: "7.88".into(),
                    after: "7.89".into()
                },
                Change {
                    path: "packages[nginx]".into(),
                    before: String::new(),
                    after: "arch=amd64, name=nginx, version=1.22".into()
                },
                Change {
                    path: "packages[telnet]".into(),
                    before: "arch=amd64, name=telnet, version=0.17".into(),
                    after: String::new()
                },
            ]
        );
    }

    #[test]
    fn nested_hardware_fields_are_paths() {
        let a = json!({"hardware": {"bios_version": "1.0", "serial_number": "X"}});
        let b = json!({"hardware": {"bios_version": "1.1", "serial_number": "X"}});
        let c = diff(&a, &b);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, "hardware.bios_version");
    }
}
