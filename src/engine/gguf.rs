//! A small, defensive GGUF header reader.
//!
//! llama.cpp's own loader answers a bad file with a null pointer and a log line; we want one
//! clear error naming the file and the cause before the engine starts, and model facts for
//! `llmtop models` without loading weights. So we read the header, the metadata and the tensor
//! table ourselves, trusting no length in the file beyond what the file can hold.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// Why a file is not a usable GGUF model.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error(
        "{0}: no such file (pass --model PATH, or run scripts/fetch-model.sh for the default model)"
    )]
    Missing(PathBuf),
    #[error("{0}: is a directory, not a GGUF file (pass the .gguf file inside it)")]
    IsDirectory(PathBuf),
    /// A FIFO or a device: reading it would block or never end.
    #[error("{}: is {kind}, not a regular file (pass a .gguf model file)", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{0}: permission denied (make it readable: chmod a+r, or copy it somewhere you can read)"
    )]
    PermissionDenied(PathBuf),
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: file is empty (re-download the model)")]
    Empty(PathBuf),
    #[error("{0}: not a GGUF file (no GGUF magic; llmtop runs llama.cpp GGUF models)")]
    NotGguf(PathBuf),
    #[error("{path}: unsupported GGUF version {version} (llama.cpp reads versions 2 and 3)")]
    Version { path: PathBuf, version: u32 },
    #[error("{path}: truncated or corrupt GGUF ({detail}; re-download the model)")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{path}: metadata {key} = {value} is out of range ({expected}); the file is corrupt or not a model llama.cpp can run, re-download it"
    )]
    Implausible {
        path: PathBuf,
        key: String,
        value: String,
        expected: String,
    },
}

/// A metadata value; arrays keep only their length and element type (tokenizer vocabularies
/// are large and we never need them).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Uint(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array { len: u64 },
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Uint(v) => Some(v),
            Value::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// What the header says about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufInfo {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub n_tensors: u64,
    /// Total elements over all tensors: the parameter count.
    pub n_params: u64,
    /// Bytes the file must have to hold every tensor it lists.
    pub min_file_size: u64,
    pub file_size: u64,
    /// The most common tensor type among 2-D weights, for files without `general.file_type`.
    pub dominant_tensor_type: Option<u32>,
    /// Byte offset in the file of each metadata value (after its type tag): lets tests and
    /// tools patch a value in place.
    pub value_offsets: BTreeMap<String, u64>,
    /// The tensor table: what the decode roofline counts (`engine::traffic`).
    pub tensors: Vec<TensorInfo>,
}

/// One tensor as the file lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Elements along each dimension, innermost first (GGUF's `ne`).
    pub dims: Vec<u64>,
    /// ggml type id.
    pub ty: u32,
    /// Bytes it takes in the file; `None` for a type this reader does not know.
    pub bytes: Option<u64>,
}

impl GgufInfo {
    pub fn architecture(&self) -> Option<&str> {
        self.metadata.get("general.architecture")?.as_str()
    }
    pub fn name(&self) -> Option<&str> {
        self.metadata.get("general.name")?.as_str()
    }
    pub fn context_length(&self) -> Option<u64> {
        let arch = self.architecture()?;
        self.metadata
            .get(&format!("{arch}.context_length"))?
            .as_u64()
    }
    /// `{arch}.{key}` as a number, when present and scalar.
    pub fn arch_u64(&self, key: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.metadata.get(&format!("{arch}.{key}"))?.as_u64()
    }
    pub fn chat_template(&self) -> Option<&str> {
        self.metadata.get("tokenizer.chat_template")?.as_str()
    }
    /// "Q4_1", "Q4_K_M", ...: from `general.file_type`, else the dominant tensor type.
    pub fn quantization(&self) -> String {
        if let Some(name) = self
            .metadata
            .get("general.file_type")
            .and_then(Value::as_u64)
            .and_then(file_type_name)
        {
            return name.to_string();
        }
        self.dominant_tensor_type
            .and_then(tensor_type_name)
            .unwrap_or("unknown")
            .to_string()
    }
}

/// Read and check the GGUF header of `path`.
pub fn read(path: &Path) -> Result<GgufInfo, GgufError> {
    use crate::util::fs::{ReadError as FileError, open_regular};
    // Only a regular file: a FIFO would block the read and a device never end (and both have
    // size 0, which would otherwise read as "file is empty").
    let (file, file_size) = open_regular(path).map_err(|e| match e {
        FileError::Missing { .. } => GgufError::Missing(path.to_path_buf()),
        FileError::NotRegular {
            kind: "a directory",
            ..
        } => GgufError::IsDirectory(path.to_path_buf()),
        FileError::NotRegular { kind, .. } => GgufError::NotRegular {
            path: path.to_path_buf(),
            kind,
        },
        FileError::PermissionDenied { .. } => GgufError::PermissionDenied(path.to_path_buf()),
        FileError::Io { source, .. } => GgufError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
        // open_regular reads nothing, so neither size nor encoding can be wrong.
        other => GgufError::Unreadable {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.reason()),
        },
    })?;
    if file_size == 0 {
        return Err(GgufError::Empty(path.to_path_buf()));
    }
    // Opening can succeed on something unreadable; the first read tells.
    let mut r = Reader {
        inner: BufReader::with_capacity(1 << 16, file),
        pos: 0,
        file_size,
    };
    let corrupt = |detail: String| GgufError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut magic = [0u8; 4];
    match r.bytes(&mut magic) {
        Ok(()) => {}
        Err(ReadError::Eof) => return Err(GgufError::NotGguf(path.to_path_buf())),
        Err(ReadError::Io(source)) => {
            return Err(GgufError::Unreadable {
                path: path.to_path_buf(),
                source,
            });
        }
        Err(ReadError::Bad(d)) => return Err(corrupt(d)),
    }
    if &magic != MAGIC {
        return Err(GgufError::NotGguf(path.to_path_buf()));
    }
    parse_body(&mut r, path, file_size).map_err(|e| match e {
        ReadError::Eof => corrupt(format!("file ends early at byte {}", r.pos)),
        ReadError::Bad(d) => corrupt(d),
        ReadError::Io(source) => GgufError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
    })?
}

fn parse_body(
    r: &mut Reader,
    path: &Path,
    file_size: u64,
) -> Result<Result<GgufInfo, GgufError>, ReadError> {
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Ok(Err(GgufError::Version {
            path: path.to_path_buf(),
            version,
        }));
    }
    let n_tensors = r.u64()?;
    let n_kv = r.u64()?;
    // Each entry takes at least 8 bytes: a count larger than the file is garbage.
    if n_tensors > file_size / 8 || n_kv > file_size / 8 {
        return Err(ReadError::Bad(format!(
            "header claims {n_tensors} tensors and {n_kv} metadata keys"
        )));
    }
    let mut metadata = BTreeMap::new();
    let mut value_offsets = BTreeMap::new();
    for _ in 0..n_kv {
        let key = r.string()?;
        let ty = r.u32()?;
        value_offsets.insert(key.clone(), r.pos);
        let value = r.value(ty)?;
        metadata.insert(key, value);
    }
    let mut n_params: u64 = 0;
    let mut max_end: u64 = 0;
    let mut type_counts: BTreeMap<u32, u64> = BTreeMap::new();
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let name = r.string()?;
        let n_dims = r.u32()?;
        if n_dims > 8 {
            return Err(ReadError::Bad(format!("tensor with {n_dims} dimensions")));
        }
        let mut elements: u64 = 1;
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = r.u64()?;
            dims.push(d);
            elements = elements.saturating_mul(d);
        }
        let ty = r.u32()?;
        let offset = r.u64()?;
        n_params = n_params.saturating_add(elements);
        if n_dims >= 2 {
            *type_counts.entry(ty).or_default() += 1;
        }
        let bytes = tensor_bytes(ty, elements);
        max_end = max_end.max(offset.saturating_add(bytes.unwrap_or(1)));
        tensors.push(TensorInfo {
            name,
            dims,
            ty,
            bytes,
        });
    }
    let alignment = metadata
        .get("general.alignment")
        .and_then(Value::as_u64)
        .filter(|a| *a > 0)
        .unwrap_or(DEFAULT_ALIGNMENT);
    let data_start = r.pos.div_ceil(alignment) * alignment;
    // No tensors, no data section (and no padding to it).
    let min_file_size = if n_tensors == 0 {
        r.pos
    } else {
        data_start.saturating_add(max_end)
    };
    if file_size < min_file_size {
        return Err(ReadError::Bad(format!(
            "{file_size} bytes on disk, tensors need {min_file_size}"
        )));
    }
    let dominant_tensor_type = type_counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(t, _)| t);
    let info = GgufInfo {
        version,
        metadata,
        n_tensors,
        n_params,
        min_file_size,
        file_size,
        dominant_tensor_type,
        value_offsets,
        tensors,
    };
    Ok(check_hyperparameters(&info, path).map(|()| info))
}

/// Layers llama.cpp can hold (`LLAMA_MAX_LAYERS`); it aborts the process beyond.
pub const MAX_LAYERS: u64 = 512;
/// Experts llama.cpp can hold (`LLAMA_MAX_EXPERTS`); it aborts the process beyond.
pub const MAX_EXPERTS: u64 = 1024;
/// The longest training context we believe: 64 Mi tokens, far above any real model (10 Mi),
/// and below the `i32` llama.cpp's API returns it in (`llama-cpp-2` panics on a negative one).
pub const MAX_CONTEXT: u64 = 1 << 26;
/// The widest embedding we believe (real models stay below 32 Ki).
pub const MAX_EMBEDDING: u64 = 1 << 20;

/// Reject metadata that llama.cpp asserts on (abort, division by zero) or that `llama-cpp-2`
/// panics on, so a corrupt file is one error line instead of a dead process. Only keys that
/// are present and scalar are checked: llama.cpp reports missing keys and bad arrays itself.
fn check_hyperparameters(info: &GgufInfo, path: &Path) -> Result<(), GgufError> {
    let Some(arch) = info.architecture() else {
        return Ok(());
    };
    let get = |k: &str| {
        let key = format!("{arch}.{k}");
        let v = info.metadata.get(&key).and_then(Value::as_u64);
        (key, v)
    };
    let check = |k: &str, range: std::ops::RangeInclusive<u64>, why: &str| {
        let (key, v) = get(k);
        match v {
            Some(v) if !range.contains(&v) => Err(GgufError::Implausible {
                path: path.to_path_buf(),
                key,
                value: v.to_string(),
                expected: format!("{}..={}{why}", range.start(), range.end()),
            }),
            _ => Ok(v),
        }
    };
    // Signed values (a negative count) are out of range as well.
    let prefix = format!("{arch}.");
    let negative = info.metadata.iter().find_map(|(k, v)| match v {
        Value::Int(i)
            if *i < 0
                && k.starts_with(&prefix)
                && (k.ends_with("_length") || k.ends_with("_count")) =>
        {
            Some((k, *i))
        }
        _ => None,
    });
    if let Some((key, v)) = negative {
        return Err(GgufError::Implausible {
            path: path.to_path_buf(),
            key: key.clone(),
            value: v.to_string(),
            expected: "a count cannot be negative".into(),
        });
    }
    check("context_length", 1..=MAX_CONTEXT, " tokens")?;
    let layers = check("block_count", 1..=MAX_LAYERS, " layers")?;
    check("embedding_length", 1..=MAX_EMBEDDING, "")?;
    if let Some(layers) = layers {
        check("nextn_predict_layers", 0..=layers, ", at most block_count")?;
    }
    let experts = check("expert_count", 0..=MAX_EXPERTS, "")?.unwrap_or(0);
    if experts == 0 {
        check("expert_used_count", 0..=0, " without expert_count")?;
        check("expert_group_count", 0..=0, " without expert_count")?;
    } else {
        check("expert_used_count", 1..=experts, ", at most expert_count")?;
        check(
            "expert_group_count",
            0..=experts - 1,
            ", below expert_count",
        )?;
    }
    Ok(())
}

enum ReadError {
    Eof,
    Io(std::io::Error),
    Bad(String),
}

struct Reader {
    inner: BufReader<std::fs::File>,
    pos: u64,
    file_size: u64,
}

impl Reader {
    fn bytes(&mut self, buf: &mut [u8]) -> Result<(), ReadError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ReadError::Eof),
            Err(e) => Err(ReadError::Io(e)),
        }
    }
    fn skip(&mut self, n: u64) -> Result<(), ReadError> {
        if self.pos.saturating_add(n) > self.file_size {
            return Err(ReadError::Eof);
        }
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())
            .map_err(ReadError::Io)?;
        self.pos += copied;
        if copied < n {
            return Err(ReadError::Eof);
        }
        Ok(())
    }
    fn u32(&mut self) -> Result<u32, ReadError> {
        let mut b = [0u8; 4];
        self.bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, ReadError> {
        let mut b = [0u8; 8];
        self.bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn string(&mut self) -> Result<String, ReadError> {
        let len = self.u64()?;
        if self.pos.saturating_add(len) > self.file_size {
            return Err(ReadError::Eof);
        }
        // Metadata strings (chat templates included) are far below this; a bigger one is garbage.
        if len > 16 << 20 {
            return Err(ReadError::Bad(format!("string of {len} bytes in header")));
        }
        let mut buf = vec![0u8; len as usize];
        self.bytes(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
    fn value(&mut self, ty: u32) -> Result<Value, ReadError> {
        let mut b8 = [0u8; 8];
        Ok(match ty {
            0 | 1 | 7 => {
                let mut b = [0u8; 1];
                self.bytes(&mut b)?;
                match ty {
                    0 => Value::Uint(u64::from(b[0])),
                    1 => Value::Int(i64::from(b[0] as i8)),
                    _ => Value::Bool(b[0] != 0),
                }
            }
            2 | 3 => {
                let mut b = [0u8; 2];
                self.bytes(&mut b)?;
                if ty == 2 {
                    Value::Uint(u64::from(u16::from_le_bytes(b)))
                } else {
                    Value::Int(i64::from(i16::from_le_bytes(b)))
                }
            }
            4 => Value::Uint(u64::from(self.u32()?)),
            5 => Value::Int(i64::from(self.u32()? as i32)),
            6 => Value::Float(f64::from(f32::from_bits(self.u32()?))),
            8 => Value::Str(self.string()?),
            9 => {
                let elem = self.u32()?;
                let len = self.u64()?;
                if len > self.file_size {
                    return Err(ReadError::Bad(format!("array of {len} elements")));
                }
                match scalar_size(elem) {
                    Some(sz) => self.skip(len.saturating_mul(sz))?,
                    None if elem == 8 => {
                        for _ in 0..len {
                            let n = self.u64()?;
                            self.skip(n)?;
                        }
                    }
                    None => {
                        return Err(ReadError::Bad(format!(
                            "array of unsupported element type {elem}"
                        )));
                    }
                }
                Value::Array { len }
            }
            10 => Value::Uint(self.u64()?),
            11 => Value::Int(self.u64()? as i64),
            12 => {
                self.bytes(&mut b8)?;
                Value::Float(f64::from_le_bytes(b8))
            }
            other => return Err(ReadError::Bad(format!("unknown metadata type {other}"))),
        })
    }
}

fn scalar_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// Bytes of a tensor of `elements` elements of ggml type `ty` (block size, bytes per block).
pub fn tensor_bytes(ty: u32, elements: u64) -> Option<u64> {
    let (block, bytes): (u64, u64) = match ty {
        0 => (1, 4),           // F32
        1 | 30 => (1, 2),      // F16, BF16
        2 | 20 => (32, 18),    // Q4_0, IQ4_NL
        3 => (32, 20),         // Q4_1
        6 => (32, 22),         // Q5_0
        7 => (32, 24),         // Q5_1
        8 => (32, 34),         // Q8_0
        9 => (32, 36),         // Q8_1
        10 => (256, 84),       // Q2_K
        11 | 21 => (256, 110), // Q3_K, IQ3_S
        12 => (256, 144),      // Q4_K
        13 => (256, 176),      // Q5_K
        14 => (256, 210),      // Q6_K
        15 => (256, 292),      // Q8_K
        16 => (256, 66),       // IQ2_XXS
        17 => (256, 74),       // IQ2_XS
        18 => (256, 98),       // IQ3_XXS
        19 => (256, 50),       // IQ1_S
        22 => (256, 82),       // IQ2_S
        23 => (256, 136),      // IQ4_XS
        24 => (1, 1),          // I8
        25 => (1, 2),          // I16
        26 => (1, 4),          // I32
        27 | 28 => (1, 8),     // I64, F64
        29 => (256, 56),       // IQ1_M
        34 => (256, 54),       // TQ1_0
        35 => (256, 66),       // TQ2_0
        39 => (32, 17),        // MXFP4
        _ => return None,
    };
    Some(elements.div_ceil(block).saturating_mul(bytes))
}

fn tensor_type_name(ty: u32) -> Option<&'static str> {
    Some(match ty {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        20 => "IQ4_NL",
        23 => "IQ4_XS",
        30 => "BF16",
        _ => return None,
    })
}

/// llama.cpp's `llama_ftype` names.
fn file_type_name(ft: u64) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Build a tiny but well-formed GGUF: two metadata keys and one F32 tensor of 4x2.
    fn tiny_gguf(truncate_data: bool) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"GGUF");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes()); // tensors
        v.extend_from_slice(&3u64.to_le_bytes()); // kv
        let s = |v: &mut Vec<u8>, s: &str| {
            v.extend_from_slice(&(s.len() as u64).to_le_bytes());
            v.extend_from_slice(s.as_bytes());
        };
        s(&mut v, "general.architecture");
        v.extend_from_slice(&8u32.to_le_bytes());
        s(&mut v, "llama");
        s(&mut v, "llama.context_length");
        v.extend_from_slice(&4u32.to_le_bytes());
        v.extend_from_slice(&2048u32.to_le_bytes());
        s(&mut v, "tokenizer.ggml.tokens");
        v.extend_from_slice(&9u32.to_le_bytes());
        v.extend_from_slice(&8u32.to_le_bytes());
        v.extend_from_slice(&2u64.to_le_bytes());
        s(&mut v, "a");
        s(&mut v, "bc");
        // tensor info
        s(&mut v, "w");
        v.extend_from_slice(&2u32.to_le_bytes());
        v.extend_from_slice(&4u64.to_le_bytes());
        v.extend_from_slice(&2u64.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes()); // F32
        v.extend_from_slice(&0u64.to_le_bytes());
        while v.len() % 32 != 0 {
            v.push(0);
        }
        let data = if truncate_data { 31 } else { 32 };
        v.extend(std::iter::repeat_n(0u8, data));
        v
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(bytes).expect("write");
        f
    }

    #[test]
    fn reads_a_well_formed_file() {
        let f = write(&tiny_gguf(false));
        let info = read(f.path()).expect("valid");
        assert_eq!(info.version, 3);
        assert_eq!(info.architecture(), Some("llama"));
        assert_eq!(info.context_length(), Some(2048));
        assert_eq!(info.n_params, 8);
        assert_eq!(info.n_tensors, 1);
        assert_eq!(
            info.metadata.get("tokenizer.ggml.tokens"),
            Some(&Value::Array { len: 2 })
        );
        assert_eq!(info.min_file_size, info.file_size);
        assert_eq!(info.quantization(), "F32");
    }

    #[test]
    fn one_byte_short_is_truncated() {
        let f = write(&tiny_gguf(true));
        let err = read(f.path()).expect_err("truncated");
        assert!(matches!(err, GgufError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("tensors need"), "{err}");
    }

    #[test]
    fn header_cut_anywhere_is_an_error_not_a_panic() {
        let full = tiny_gguf(false);
        for cut in 1..full.len() - 32 {
            let f = write(&full[..cut]);
            let err = read(f.path()).expect_err("cut file must fail");
            match cut {
                1..=3 => assert!(matches!(err, GgufError::NotGguf(_)), "cut {cut}: {err}"),
                _ => assert!(matches!(err, GgufError::Corrupt { .. }), "cut {cut}: {err}"),
            }
        }
    }

    #[test]
    fn bad_inputs_name_the_cause() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("nope.gguf");
        assert!(matches!(read(&missing), Err(GgufError::Missing(_))));
        assert!(matches!(read(dir.path()), Err(GgufError::IsDirectory(_))));
        let empty = write(b"");
        assert!(matches!(read(empty.path()), Err(GgufError::Empty(_))));
        // A FIFO (size 0, like an empty file) is refused without blocking, as what it is.
        let fifo = dir.path().join("pipe.gguf");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("cstr");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
        let err = read(&fifo).expect_err("fifo");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: is a named pipe (FIFO), not a regular file (pass a .gguf model file)",
                fifo.display()
            )
        );
        assert!(matches!(
            read(Path::new("/dev/zero")),
            Err(GgufError::NotRegular {
                kind: "a character device",
                ..
            })
        ));
        let text = write(b"hello, this is not a model at all");
        assert!(matches!(read(text.path()), Err(GgufError::NotGguf(_))));
        let mut v1 = tiny_gguf(false);
        v1[4] = 1;
        let f = write(&v1);
        assert!(matches!(
            read(f.path()),
            Err(GgufError::Version { version: 1, .. })
        ));
    }

    #[test]
    fn absurd_counts_are_rejected_without_allocating() {
        let mut v = tiny_gguf(false);
        v[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let f = write(&v);
        let err = read(f.path()).expect_err("absurd");
        assert!(err.to_string().contains("header claims"), "{err}");
    }

    /// The tiny file with its u32 `llama.context_length` set to `value`, at the offset the
    /// reader reports.
    fn with_context_length(value: u32) -> Vec<u8> {
        let mut v = tiny_gguf(false);
        let f = write(&v);
        let info = read(f.path()).expect("valid");
        let at = info.value_offsets["llama.context_length"] as usize;
        assert_eq!(&v[at..at + 4], &2048u32.to_le_bytes());
        v[at..at + 4].copy_from_slice(&value.to_le_bytes());
        v
    }

    #[test]
    fn metadata_llama_cpp_aborts_on_is_refused_with_key_and_value() {
        for bad in [0, u32::MAX, (MAX_CONTEXT + 1) as u32] {
            let f = write(&with_context_length(bad));
            let err = read(f.path()).expect_err("out of range");
            assert!(matches!(err, GgufError::Implausible { .. }), "{err}");
            let line = err.to_string();
            assert!(
                line.contains(&format!(
                    "metadata llama.context_length = {bad} is out of range (1..=67108864 tokens)"
                )),
                "{line}"
            );
        }
        // The edges of the range are fine.
        for good in [1, MAX_CONTEXT as u32] {
            let f = write(&with_context_length(good));
            assert_eq!(
                read(f.path()).expect("in range").context_length(),
                Some(u64::from(good))
            );
        }
    }

    #[test]
    fn layer_and_expert_counts_follow_llama_cpp_limits() {
        let info = |pairs: &[(&str, u64)]| GgufInfo {
            version: 3,
            metadata: [(
                "general.architecture".to_string(),
                Value::Str("llama".into()),
            )]
            .into_iter()
            .chain(
                pairs
                    .iter()
                    .map(|(k, v)| (format!("llama.{k}"), Value::Uint(*v))),
            )
            .collect(),
            n_tensors: 0,
            n_params: 0,
            min_file_size: 0,
            file_size: 0,
            dominant_tensor_type: None,
            value_offsets: BTreeMap::new(),
            tensors: Vec::new(),
        };
        let p = Path::new("m.gguf");
        let refused = |pairs: &[(&str, u64)]| check_hyperparameters(&info(pairs), p).is_err();
        assert!(refused(&[("block_count", 0)]));
        assert!(refused(&[("block_count", MAX_LAYERS + 1)]));
        assert!(!refused(&[("block_count", MAX_LAYERS)]));
        assert!(refused(&[("embedding_length", 0)]));
        assert!(refused(&[
            ("block_count", 30),
            ("nextn_predict_layers", 31)
        ]));
        assert!(refused(&[("expert_count", MAX_EXPERTS + 1)]));
        assert!(refused(&[("expert_used_count", 2)]));
        assert!(refused(&[("expert_count", 8), ("expert_used_count", 9)]));
        assert!(refused(&[("expert_count", 8), ("expert_used_count", 0)]));
        assert!(!refused(&[("expert_count", 8), ("expert_used_count", 2)]));
        let mut negative = info(&[]);
        negative
            .metadata
            .insert("llama.block_count".into(), Value::Int(-1));
        let err = check_hyperparameters(&negative, p).expect_err("negative");
        assert!(err.to_string().contains("llama.block_count = -1"), "{err}");
    }
}
