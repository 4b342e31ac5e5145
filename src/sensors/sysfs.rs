//! Reading small sysfs attribute files below an injectable root, with errors that say which
//! file and why (missing, root-only, not an attribute file, unreadable, not a number).
//!
//! Every read goes through [`crate::util::fs::read_capped`]: a FIFO or a device planted in
//! the tree is refused at once instead of blocking the sampler or filling memory.
//!
//! The reader itself is injectable too: tests run as root in CI, and root ignores mode 000, so
//! "permission denied" is simulated by a reader that refuses chosen paths.

use crate::util::fs::{ReadError, limits, read_capped};
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// Reads one file's text. The real one is [`RealFs`].
pub trait ReadFile: Send + Sync {
    fn read(&self, path: &Path) -> io::Result<String>;
}

/// [`read_capped`] with the sysfs limit, opening the file afresh each time so a vanished
/// device is seen. The [`ReadError`] travels inside the `io::Error` so [`classify`] keeps it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl ReadFile for RealFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        read_capped(path, limits::SYSFS).map_err(|e| {
            let kind = match e {
                ReadError::Missing { .. } => io::ErrorKind::NotFound,
                ReadError::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
                ReadError::Io { ref source, .. } => source.kind(),
                _ => io::ErrorKind::InvalidData,
            };
            io::Error::new(kind, e)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    #[error("{}: missing", .0.display())]
    Missing(PathBuf),
    #[error("{}: permission denied", .0.display())]
    PermissionDenied(PathBuf),
    /// A FIFO, a device or an oversized file where an attribute should be.
    #[error("{}: not a sysfs attribute: {why}", path.display())]
    NotAttribute { path: PathBuf, why: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a number: {text:?}", path.display())]
    Garbage { path: PathBuf, text: String },
}

/// A sysfs tree: `/sys` on a live machine, a captured directory in tests.
#[derive(Clone)]
pub struct Sysfs {
    root: PathBuf,
    reader: Arc<dyn ReadFile>,
}

impl std::fmt::Debug for Sysfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sysfs").field("root", &self.root).finish()
    }
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_reader(root, Arc::new(RealFs))
    }

    pub fn with_reader(root: impl Into<PathBuf>, reader: Arc<dyn ReadFile>) -> Self {
        Self {
            root: root.into(),
            reader,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The trimmed text of a file.
    pub fn read_str(&self, path: &Path) -> Result<String, SysfsError> {
        match self.reader.read(path) {
            Ok(s) => Ok(s.trim().to_string()),
            Err(e) => Err(classify(path, e)),
        }
    }

    /// A file holding one number (sysfs integers: millidegrees, microwatts, microjoules).
    pub fn read_num<T: FromStr>(&self, path: &Path) -> Result<T, SysfsError> {
        let text = self.read_str(path)?;
        text.parse::<T>().map_err(|_| SysfsError::Garbage {
            path: path.to_path_buf(),
            text: text.chars().take(40).collect(),
        })
    }
}

impl SysfsError {
    /// The cause without the path, for reports that name the file already.
    pub fn reason(&self) -> String {
        match self {
            SysfsError::Missing(_) => "missing".into(),
            SysfsError::PermissionDenied(_) => "permission denied".into(),
            SysfsError::NotAttribute { why, .. } => why.clone(),
            SysfsError::Io { source, .. } => source.to_string(),
            SysfsError::Garbage { text, .. } => format!("not a number: {text:?}"),
        }
    }
}

fn classify(path: &Path, e: io::Error) -> SysfsError {
    if let Some(re) = e.get_ref().and_then(|r| r.downcast_ref::<ReadError>()) {
        match re {
            ReadError::NotRegular { kind, .. } => {
                return SysfsError::NotAttribute {
                    path: path.to_path_buf(),
                    why: format!("{kind}, not a regular file"),
                };
            }
            ReadError::TooLarge { .. } | ReadError::NotUtf8 { .. } => {
                return SysfsError::NotAttribute {
                    path: path.to_path_buf(),
                    why: re.reason(),
                };
            }
            ReadError::Io { source, .. } => {
                return SysfsError::Io {
                    path: path.to_path_buf(),
                    source: io::Error::new(source.kind(), source.to_string()),
                };
            }
            ReadError::Missing { .. } | ReadError::PermissionDenied { .. } => {}
        }
    }
    match e.kind() {
        io::ErrorKind::NotFound => SysfsError::Missing(path.to_path_buf()),
        io::ErrorKind::PermissionDenied => SysfsError::PermissionDenied(path.to_path_buf()),
        _ => SysfsError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// Entries of a class directory (`class/hwmon`, `class/powercap`), sorted by name so that
/// discovery is deterministic. A missing directory is simply empty.
pub fn list_dir(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort_by_key(|e| natural_key(&e.0));
    out
}

/// Sort "hwmon10" after "hwmon9": split trailing digits off.
fn natural_key(s: &str) -> (String, u64, String) {
    let head: String = s.chars().take_while(|c| !c.is_ascii_digit()).collect();
    let rest = &s[head.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n = digits.parse::<u64>().unwrap_or(0);
    (head, n, rest[digits.len()..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors_and_parses_numbers() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ok"), "42000\n").expect("write");
        std::fs::write(dir.path().join("junk"), "hello\n").expect("write");
        std::fs::create_dir(dir.path().join("adir")).expect("mkdir");
        let fs = Sysfs::new(dir.path());
        assert_eq!(
            fs.read_num::<i64>(&dir.path().join("ok")).expect("ok"),
            42000
        );
        assert!(matches!(
            fs.read_num::<i64>(&dir.path().join("junk")),
            Err(SysfsError::Garbage { .. })
        ));
        assert!(matches!(
            fs.read_num::<i64>(&dir.path().join("nope")),
            Err(SysfsError::Missing(_))
        ));
        // A directory where a file is expected is unreadable, not missing.
        assert!(matches!(
            fs.read_num::<i64>(&dir.path().join("adir")),
            Err(SysfsError::NotAttribute { .. })
        ));
    }

    #[test]
    fn natural_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        for n in ["hwmon10", "hwmon2", "hwmon1"] {
            std::fs::create_dir(dir.path().join(n)).expect("mkdir");
        }
        let names: Vec<String> = list_dir(dir.path()).into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["hwmon1", "hwmon2", "hwmon10"]);
    }
}
