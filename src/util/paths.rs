//! Where llmtop's config and data live (XDG paths via `directories`).

use std::path::PathBuf;

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "llmtop")
}

/// `~/.config/llmtop/config.toml` on Linux.
pub fn default_config_file() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().join("config.toml"))
}

/// `~/.config/llmtop` on Linux: user themes live in `themes/` below it.
pub fn config_dir() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().to_path_buf())
}

/// `~/.local/share/llmtop` on Linux (`LLMTOP_DATA_DIR` overrides, for tests and portable setups).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LLMTOP_DATA_DIR") {
        return PathBuf::from(dir);
    }
    project_dirs()
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".llmtop"))
}

/// Where `scripts/fetch-model.sh` puts the default model.
pub fn models_dir() -> PathBuf {
    data_dir().join("models")
}
