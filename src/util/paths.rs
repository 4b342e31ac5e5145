//! Where llmtop's config and data live (XDG paths via `directories`).

use std::path::{Component, Path, PathBuf};

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

/// `target` as a path relative to the directory `base` (both absolute, or `target` relative
/// already, then returned as it is): what a Markdown file in `base` links an image by.
pub fn relative_to(base: &Path, target: &Path) -> PathBuf {
    if target.is_relative() || base.is_relative() {
        return target.to_path_buf();
    }
    let b: Vec<Component> = base.components().collect();
    let t: Vec<Component> = target.components().collect();
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// The directory `path` would be written into, when it does not exist: an output flag is
/// checked before minutes of work rather than failing at the end.
pub fn missing_parent(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() && !d.is_dir() => Some(d),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_and_descend() {
        let r = |b: &str, t: &str| relative_to(Path::new(b), Path::new(t));
        assert_eq!(
            r("/home/u/cards", "/home/u/cards/c.svg"),
            Path::new("c.svg")
        );
        assert_eq!(
            r("/home/u/cards", "/home/u/pics/c.svg"),
            Path::new("../pics/c.svg")
        );
        assert_eq!(r("/home/u", "/tmp/c.svg"), Path::new("../../tmp/c.svg"));
        assert_eq!(r("/home/u", "pics/c.svg"), Path::new("pics/c.svg"));
    }

    #[test]
    fn missing_parent_names_the_directory() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("no/such/out.svg");
        assert_eq!(
            missing_parent(&p),
            Some(dir.path().join("no/such").as_path())
        );
        assert_eq!(missing_parent(&dir.path().join("ok.svg")), None);
        assert_eq!(missing_parent(Path::new("here.svg")), None);
    }
}
