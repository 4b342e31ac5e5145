//! File helpers shared by every layer: atomic writes, and the one reader for every file a user
//! or the machine hands us (config, themes, run cards, the tally, sysfs attributes, model
//! manifests).
//!
//! Reading is where hostile input bites: a FIFO blocks `read` forever, `/dev/zero` never ends,
//! a 10 GB "config" fills memory. [`read_capped`] refuses all three before reading a byte.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a file could not be read. Each message names the path, the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: no such file", path.display())]
    Missing { path: PathBuf },
    #[error("{}: permission denied; make it readable (chmod) or use another file", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("{}: is {kind}, not a regular file; give the path of a regular file", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{}: larger than {} (the limit for this file); check that this is the right file",
        path.display(),
        human_bytes(*max)
    )]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{}: not UTF-8 text; is this the right file?", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ReadError {
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Missing { path }
            | ReadError::PermissionDenied { path }
            | ReadError::NotRegular { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::NotUtf8 { path }
            | ReadError::Io { path, .. } => path,
        }
    }

    /// The message without the leading "path: ", for callers that name the file themselves.
    pub fn reason(&self) -> String {
        let s = self.to_string();
        let prefix = format!("{}: ", self.path().display());
        match s.strip_prefix(&prefix) {
            Some(rest) => rest.to_string(),
            None => s,
        }
    }

    fn from_io(path: &Path, e: std::io::Error) -> Self {
        let path = path.to_path_buf();
        match e.kind() {
            std::io::ErrorKind::NotFound => ReadError::Missing { path },
            std::io::ErrorKind::PermissionDenied => ReadError::PermissionDenied { path },
            _ if e.raw_os_error() == Some(libc::EISDIR) => ReadError::NotRegular {
                path,
                kind: "a directory",
            },
            _ => ReadError::Io { path, source: e },
        }
    }
}

/// "1 MiB", "64 KiB", "300 bytes".
fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// What a file that is not a regular file is, in words.
fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a named pipe (FIFO)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Open `path` for reading without ever blocking, and only if it is a regular file.
///
/// The type is checked twice: `stat` before opening (opening some devices has effects) and
/// `fstat` on the opened file (the path may have been swapped in between). `O_NONBLOCK` makes
/// the open of a FIFO return at once instead of waiting for a writer; on a regular file it
/// changes nothing. Sysfs and procfs attributes are regular files.
pub fn open_regular(path: &Path) -> Result<(File, u64), ReadError> {
    let meta = std::fs::metadata(path).map_err(|e| ReadError::from_io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| ReadError::from_io(path, e))?;
    let meta = file.metadata().map_err(|e| ReadError::from_io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok((file, meta.len()))
}

/// The bytes of the regular file `path`, at most `max_bytes` of them: a larger file is
/// refused, never truncated. Never blocks (see [`open_regular`]).
pub fn read_capped_bytes(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let (file, len) = open_regular(path)?;
    let too_large = || ReadError::TooLarge {
        path: path.to_path_buf(),
        max: max_bytes,
    };
    // sysfs says 4096 and procfs 0 whatever they hold: the size is only a hint, the read
    // below is the check.
    if len > max_bytes {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(len.min(max_bytes) as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| ReadError::from_io(path, e))?;
    if buf.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(buf)
}

/// The UTF-8 text of the regular file `path`, at most `max_bytes` long; see
/// [`read_capped_bytes`].
pub fn read_capped(path: &Path, max_bytes: u64) -> Result<String, ReadError> {
    String::from_utf8(read_capped_bytes(path, max_bytes)?).map_err(|_| ReadError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

/// Size limits, one per kind of file: far above any real file, far below what hurts.
pub mod limits {
    /// A sysfs or procfs attribute (one page in the kernel).
    pub const SYSFS: u64 = 64 << 10;
    pub const CONFIG: u64 = 1 << 20;
    pub const THEME: u64 = 256 << 10;
    pub const RUN_CARD: u64 = 16 << 20;
    pub const TALLY: u64 = 1 << 20;
    /// An Ollama manifest (a few hundred bytes of JSON).
    pub const MANIFEST: u64 = 1 << 20;
}

/// Write `bytes` to `path` atomically: a temp file in the same directory, fsync, rename.
/// A kill at any moment leaves either the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.json");
        write_atomic(&p, b"first version, longer").expect("write 1");
        write_atomic(&p, b"second").expect("write 2");
        assert_eq!(std::fs::read(&p).expect("read"), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn reads_regular_files_up_to_the_cap_and_refuses_larger() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "12345").expect("write");
        assert_eq!(read_capped(&p, 5).expect("exactly the cap"), "12345");
        let e = read_capped(&p, 4).expect_err("one byte over");
        assert_eq!(
            e.to_string(),
            format!(
                "{}: larger than 4 bytes (the limit for this file); check that this is the right file",
                p.display()
            )
        );
        let e = read_capped(&dir.path().join("nope"), 5).expect_err("missing");
        assert!(matches!(e, ReadError::Missing { .. }), "{e}");
        std::fs::write(&p, [0xff, 0xfe]).expect("write");
        assert!(matches!(read_capped(&p, 5), Err(ReadError::NotUtf8 { .. })));
    }

    #[test]
    fn refuses_fifos_devices_and_directories_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("cstr");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        let started = std::time::Instant::now();
        let e = read_capped(&fifo, 1 << 20).expect_err("fifo");
        assert_eq!(
            e.to_string(),
            format!(
                "{}: is a named pipe (FIFO), not a regular file; give the path of a regular file",
                fifo.display()
            )
        );
        let e = read_capped(&zero, 1 << 20).expect_err("/dev/zero");
        assert!(
            matches!(
                e,
                ReadError::NotRegular {
                    kind: "a character device",
                    ..
                }
            ),
            "{e}"
        );
        let e = read_capped(dir.path(), 1 << 20).expect_err("dir");
        assert!(
            matches!(
                e,
                ReadError::NotRegular {
                    kind: "a directory",
                    ..
                }
            ),
            "{e}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // procfs files claim size 0 and still read in full.
        let stat = read_capped(Path::new("/proc/self/stat"), 64 << 10).expect("procfs");
        assert!(stat.contains(&std::process::id().to_string()), "{stat}");
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("nope").join("a.json");
        assert!(write_atomic(&p, b"x").is_err());
    }
}
