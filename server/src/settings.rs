//! Reading configuration sources from the machine (file, environment) and handing them to the
//! pure loader in `spindle_hub::config`.

use anyhow::{Context, Result, bail};
use spindle_hub::config::{
    self, ConfigFile, ConfigFormat, ConfigSources, ConfigWarning, Loaded, Role,
};
use std::path::Path;

/// Loads the configuration for `role` from `path` (if any), the `SPINDLE_*` / `CENTRIFUGO_*`
/// environment and `flags` (validated for the role and reduced to what it keeps), and reports
/// warnings on stderr.
pub fn load(
    path: Option<&Path>,
    flags: Vec<(String, String)>,
    strict: bool,
    role: Role,
) -> Result<Loaded> {
    let file = match path {
        Some(path) => Some(read_file(path)?),
        None => None,
    };
    let env = std::env::vars()
        .filter(|(name, _)| name.starts_with("SPINDLE_") || name.starts_with("CENTRIFUGO_"))
        .collect();
    let loaded = config::load(&ConfigSources {
        file,
        env,
        flags,
        strict,
        role,
    })
    // The error names itself ("invalid configuration: …"): no second prefix.
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    for warning in &loaded.warnings {
        report(warning);
    }
    Ok(loaded)
}

fn read_file(path: &Path) -> Result<ConfigFile> {
    let Some(format) = ConfigFormat::from_path_extension(path) else {
        bail!(
            "{}: unknown config format (use .json, .yaml, .yml or .toml)",
            path.display()
        );
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    Ok(ConfigFile {
        text,
        format,
        name_for_errors: path.display().to_string(),
    })
}

fn report(warning: &ConfigWarning) {
    eprintln!("spindle: config warning: {warning}");
}
