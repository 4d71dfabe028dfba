//! Names and words the configuration checks on their own, and the
//! run-time paths share: interface, instance, namespace and DNS domain
//! names, and log levels. Each refusal says what the name may be.

use super::ConfigError;
use crate::sys::IFNAMSIZ;

/// Checks an interface name as the kernel's `dev_valid_name` does; `id` is
/// the option that gave it (`"ifname"` or `"uplink"`).
pub fn check_ifname(id: &'static str, name: &str) -> Result<(), ConfigError> {
    let flag = super::Key::flag(id);
    if name.is_empty() {
        return Err(ConfigError::opt(
            id,
            format!("{flag}: an interface name cannot be empty"),
        ));
    }
    if name.len() >= IFNAMSIZ {
        return Err(ConfigError::opt(
            id,
            format!(
                "{flag} '{name}' is {} bytes; interface names are at most {} bytes",
                name.len(),
                IFNAMSIZ - 1
            ),
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        return Err(ConfigError::opt(
            id,
            format!("{flag} '{name}' is not a valid interface name (no '/', ':' or spaces)"),
        ));
    }
    Ok(())
}

/// Checks an instance name: it becomes a file name under /run/vswitchd.
pub fn check_instance_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::opt(
            "name",
            format!(
                "--name '{name}' is not a valid instance name (1-64 of A-Z a-z 0-9 . _ -, not starting with '.')"
            ),
        ))
    }
}

/// The default DNS domain: the instance name, made a valid domain ('_' and
/// empty labels do not make one: `my_sw` becomes `my-sw`), else `vswitchd`.
pub fn domain_of_instance(name: &str) -> String {
    let d: String = name
        .to_ascii_lowercase()
        .split('.')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let l: String = l
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .take(63)
                .collect();
            l.trim_matches('-').to_string()
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(".");
    if check_dns_domain(&d).is_ok() {
        d
    } else {
        "vswitchd".to_string()
    }
}

/// Whether `d` is a DNS domain the server can own: dot-separated labels of
/// 1 to 63 letters, digits and '-' (not first or last), 253 bytes at most,
/// and not `in-addr.arpa` or below (reverse lookups are answered apart).
pub fn check_dns_domain(d: &str) -> Result<(), String> {
    if d.is_empty() || d.len() > 253 {
        return Err("1 to 253 bytes".into());
    }
    for label in d.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "label '{label}' is not 1 to 63 letters, digits or '-' (not first or last)"
            ));
        }
    }
    if d == "arpa" || d.ends_with(".arpa") {
        return Err("reverse-lookup zones (.arpa) cannot be the port domain".into());
    }
    Ok(())
}

/// Whether `name` is a namespace name `ip netns` would accept: not empty,
/// not `.` or `..`, no `/`, shorter than `NAME_MAX`.
pub fn check_netns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a namespace name cannot be empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("'{name}' is not a valid namespace name"));
    }
    if name.contains('/') || name.contains('\0') {
        return Err(format!(
            "namespace name '{name}' contains '/' or NUL, which ip netns refuses"
        ));
    }
    if name.len() >= 255 {
        return Err(format!(
            "namespace name '{}...' is {} bytes; ip netns allows at most 254",
            &name[..name.char_indices().nth(20).map_or(name.len(), |(i, _)| i)],
            name.len()
        ));
    }
    Ok(())
}

/// A log level, or a tracing filter of `LEVEL` and `TARGET=LEVEL`
/// directives; anything else (`verbose`) is refused instead of silently
/// turning logging off (tracing would take it for a target name).
pub fn check_log_level(s: &str) -> Result<(), ConfigError> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let ok = !s.is_empty()
        && s.split(',').all(|d| {
            let level = d.rsplit_once('=').map_or(d, |(_, l)| l);
            LEVELS.contains(&level.to_ascii_lowercase().as_str())
        })
        && tracing_subscriber::EnvFilter::try_new(s).is_ok();
    if ok {
        Ok(())
    } else {
        Err(ConfigError::opt(
            "log_level",
            format!(
                "--log-level '{s}': use error, warn, info, debug or trace (or a filter such as vswitchd=debug)"
            ),
        ))
    }
}
