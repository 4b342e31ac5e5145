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

/// `<data dir>/llmtop.log`: where logs (llama.cpp's included) go.
pub fn log_file() -> PathBuf {
    data_dir().join("llmtop.log")
}

/// The data dir must be a directory, or not exist yet (it is created when needed). Anything
/// else (a regular file, say) is one line naming it and the fix, before any command runs,
/// instead of "File exists" from deep inside one.
pub fn check_data_dir() -> Result<(), String> {
    let dir = data_dir();
    let from_env = std::env::var_os("LLMTOP_DATA_DIR").is_some();
    let named = if from_env {
        format!("LLMTOP_DATA_DIR={}", dir.display())
    } else {
        format!("data directory {}", dir.display())
    };
    let fix = if from_env {
        "point LLMTOP_DATA_DIR at a directory (it is created if missing) or unset it"
    } else {
        "move that file away, or set LLMTOP_DATA_DIR to a directory"
    };
    if from_env && dir.as_os_str().is_empty() {
        return Err(format!("LLMTOP_DATA_DIR is set but empty; {fix}"));
    }
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{named}: not a directory; {fix}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A dangling link would make "create it" fail with a puzzling error.
            if std::fs::symlink_metadata(&dir).is_ok() {
                Err(format!("{named}: a link to nothing; {fix}"))
            } else {
                Ok(())
            }
        }
        Err(e) => Err(format!("{named}: {e}; {fix}")),
    }
}

/// Where `scripts/fetch-model.sh` puts the default model.
pub fn models_dir() -> PathBuf {
    data_dir().join("models")
}
