//! What one generated token reads from memory: the decode roofline's numerator.
//!
//! Decode is memory-bound: for each token llama.cpp multiplies one activation vector by every
//! weight matrix once, so the bytes it reads are the weights it uses plus the KV cache up to
//! the current depth. From the GGUF tensor table:
//!
//! - every tensor once (attention, feed-forward, norms, the output matrix),
//! - but an embedding table (`token_embd`, `position_embd`, `token_types`) only one row: a
//!   token is a row lookup, not a matrix product. Where the file has no `output.weight`, the
//!   output matrix *is* the token embedding (tied weights) and that table is read whole;
//! - of a mixture-of-experts layer's expert tensors (`*_exps`, one slice per expert) only the
//!   `expert_used_count` of `expert_count` experts the router picks (shared experts, `*_shexp`,
//!   are dense);
//! - the KV cache: at depth `d` each layer with attention reads `d` keys and `d` values of
//!   `head_count_kv` heads, in the cache's type (llama.cpp's default, F16, which llmtop keeps).
//!
//! Not counted: activations and scratch (small, cached), sliding-window layers reading less
//! than the full depth, MLA's compressed caches. The figure is what a perfect kernel would have
//! to stream from memory; the roofline share divides the rate this implies by the machine's
//! measured bandwidth (`accounting::roofline`).

use super::gguf::{GgufInfo, Value, tensor_bytes};
use serde::{Deserialize, Serialize};

/// Bytes an F16 KV-cache element takes (llama.cpp's default cache type, which llmtop keeps).
pub const KV_F16_BYTES: u64 = 2;

/// The bytes one generated token reads, worked out from a model's tensor table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodeTraffic {
    /// Weight bytes read per generated token.
    pub weight_bytes: u64,
    /// Every tensor's bytes in the file, for comparison.
    pub file_tensor_bytes: u64,
    /// Embedding-table bytes not read: all but the looked-up row of each table.
    pub lookup_skipped_bytes: u64,
    /// The file has no `output.weight`: the token embedding is the output matrix, read whole.
    pub tied_output: bool,
    /// Mixture of experts: the expert tensors' bytes and the share a token reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts: Option<ExpertTraffic>,
    /// KV-cache bytes a token reads per token of context before it (keys and values of every
    /// layer with attention).
    pub kv_bytes_per_position: u64,
    /// `block_count`: the layers (what `--gpu-layers` counts).
    #[serde(default)]
    pub n_layer: u64,
    pub kv_layers: u64,
    pub kv_heads: u64,
    pub head_dim_k: u64,
    pub head_dim_v: u64,
    /// The cache's element type, e.g. "f16".
    pub kv_type: String,
    /// Tensors of a type this reader does not size, left out: the figure is then a floor.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unsized_tensors: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The experts of a mixture-of-experts model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpertTraffic {
    /// `expert_count`: experts per layer.
    pub count: u64,
    /// `expert_used_count`: experts the router picks per token.
    pub used: u64,
    /// Bytes of every expert tensor in the file.
    pub file_bytes: u64,
    /// Of those, what one token reads: `file_bytes × used / count`.
    pub active_bytes: u64,
}

impl DecodeTraffic {
    /// Bytes one token reads at KV depth `depth` (tokens already in the context).
    pub fn bytes_at_depth(&self, depth: f64) -> f64 {
        self.weight_bytes as f64 + self.kv_bytes_per_position as f64 * depth.max(0.0)
    }

    /// From the GGUF tensor table and metadata; `None` for a file without tensors.
    pub fn from_gguf(info: &GgufInfo) -> Option<Self> {
        if info.tensors.is_empty() {
            return None;
        }
        let tied_output = !info.tensors.iter().any(|t| t.name == "output.weight");
        let experts_meta = match (
            info.arch_u64("expert_count"),
            info.arch_u64("expert_used_count"),
        ) {
            (Some(count), Some(used)) if count > 0 && used > 0 && used <= count => {
                Some((count, used))
            }
            _ => None,
        };
        let mut weight: u64 = 0;
        let mut file: u64 = 0;
        let mut skipped: u64 = 0;
        let mut unknown_size = 0;
        let mut expert_file: u64 = 0;
        let mut expert_active: u64 = 0;
        let mut attn_layers = std::collections::BTreeSet::new();
        for t in &info.tensors {
            let Some(bytes) = t.bytes else {
                unknown_size += 1;
                continue;
            };
            file += bytes;
            if let Some(layer) = attention_layer(&t.name) {
                attn_layers.insert(layer);
            }
            let lookup = matches!(
                t.name.as_str(),
                "token_embd.weight" | "position_embd.weight" | "token_types.weight"
            ) && !(tied_output && t.name == "token_embd.weight");
            if lookup {
                // One row of `dims[0]` elements.
                let row = t
                    .dims
                    .first()
                    .and_then(|&n| tensor_bytes(t.ty, n))
                    .unwrap_or(bytes)
                    .min(bytes);
                weight += row;
                skipped += bytes - row;
            } else if let (true, Some((count, used))) = (is_expert(&t.name), experts_meta) {
                let active = (u128::from(bytes) * u128::from(used) / u128::from(count)) as u64;
                expert_file += bytes;
                expert_active += active;
                weight += active;
            } else {
                weight += bytes;
            }
        }
        let n_head = info.arch_u64("attention.head_count").unwrap_or(0);
        // A per-layer array of KV heads is read as its length only: fall back to head_count.
        let kv_heads = info
            .arch_u64("attention.head_count_kv")
            .filter(|_| !is_array(info, "attention.head_count_kv"))
            .unwrap_or(n_head);
        let n_embd = info.arch_u64("embedding_length").unwrap_or(0);
        let default_dim = n_embd.checked_div(n_head).unwrap_or(0);
        let head_dim_k = info.arch_u64("attention.key_length").unwrap_or(default_dim);
        let head_dim_v = info
            .arch_u64("attention.value_length")
            .unwrap_or(default_dim);
        let kv_layers = attn_layers.len() as u64;
        let kv_bytes_per_position = kv_layers * kv_heads * (head_dim_k + head_dim_v) * KV_F16_BYTES;
        Some(Self {
            weight_bytes: weight,
            file_tensor_bytes: file,
            lookup_skipped_bytes: skipped,
            tied_output,
            experts: experts_meta
                .filter(|_| expert_file > 0)
                .map(|(count, used)| ExpertTraffic {
                    count,
                    used,
                    file_bytes: expert_file,
                    active_bytes: expert_active,
                }),
            kv_bytes_per_position,
            n_layer: info.arch_u64("block_count").unwrap_or(kv_layers),
            kv_layers,
            kv_heads,
            head_dim_k,
            head_dim_v,
            kv_type: "f16".into(),
            unsized_tensors: unknown_size,
        })
    }
}

fn is_array(info: &GgufInfo, key: &str) -> bool {
    info.architecture()
        .and_then(|a| info.metadata.get(&format!("{a}.{key}")))
        .is_some_and(|v| matches!(v, Value::Array { .. }))
}

/// `blk.N.ffn_gate_exps.weight` and the like: one slice per expert.
fn is_expert(name: &str) -> bool {
    name.split('.').any(|part| part.ends_with("_exps"))
}

/// The layer number of a tensor that makes a layer keep a KV cache (its key projection).
fn attention_layer(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("blk.")?;
    let (n, tensor) = rest.split_once('.')?;
    let kind = tensor.split('.').next()?;
    matches!(kind, "attn_k" | "attn_qkv" | "attn_kv_a_mqa")
        .then(|| n.parse().ok())
        .flatten()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A metadata value to write.
    pub enum Meta<'a> {
        U32(u32),
        Str(&'a str),
    }

    /// A GGUF file of `meta` and `tensors` (name, dims, ggml type), data zero-filled.
    pub fn write_gguf(meta: &[(&str, Meta)], tensors: &[(&str, &[u64], u32)]) -> Vec<u8> {
        let mut v = Vec::new();
        let s = |v: &mut Vec<u8>, s: &str| {
            v.extend_from_slice(&(s.len() as u64).to_le_bytes());
            v.extend_from_slice(s.as_bytes());
        };
        v.extend_from_slice(b"GGUF");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        v.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        for (k, m) in meta {
            s(&mut v, k);
            match m {
                Meta::U32(n) => {
                    v.extend_from_slice(&4u32.to_le_bytes());
                    v.extend_from_slice(&n.to_le_bytes());
                }
                Meta::Str(t) => {
                    v.extend_from_slice(&8u32.to_le_bytes());
                    s(&mut v, t);
                }
            }
        }
        let mut offset = 0u64;
        let mut sizes = Vec::new();
        for (name, dims, ty) in tensors {
            s(&mut v, name);
            v.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in *dims {
                v.extend_from_slice(&d.to_le_bytes());
            }
            v.extend_from_slice(&ty.to_le_bytes());
            v.extend_from_slice(&offset.to_le_bytes());
            let n: u64 = dims.iter().product();
            let bytes = tensor_bytes(*ty, n).expect("known type");
            sizes.push(bytes);
            offset += bytes.div_ceil(32) * 32;
        }
        while v.len() % 32 != 0 {
            v.push(0);
        }
        v.extend(std::iter::repeat_n(0u8, offset as usize));
        v
    }

    fn read(bytes: &[u8]) -> GgufInfo {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(bytes).expect("write");
        crate::engine::gguf::read(f.path()).expect("valid gguf")
    }

    const F32: u32 = 0;
    const F16: u32 = 1;
    const Q4_1: u32 = 3;

    /// A two-layer model: embedding 64 x vocab 100, attention with 4 heads (2 KV heads),
    /// feed-forward 128 wide; `moe` gives each layer 8 experts of which 2 are used.
    fn model(moe: bool, tied: bool) -> Vec<u8> {
        let arch = if moe { "qwen3moe" } else { "llama" };
        let key = |k: &str| format!("{arch}.{k}");
        let keys: Vec<String> = [
            "block_count",
            "embedding_length",
            "attention.head_count",
            "attention.head_count_kv",
            "context_length",
            "expert_count",
            "expert_used_count",
        ]
        .iter()
        .map(|k| key(k))
        .collect();
        let mut meta = vec![
            ("general.architecture", Meta::Str(arch)),
            (keys[0].as_str(), Meta::U32(2)),
            (keys[1].as_str(), Meta::U32(64)),
            (keys[2].as_str(), Meta::U32(4)),
            (keys[3].as_str(), Meta::U32(2)),
            (keys[4].as_str(), Meta::U32(512)),
        ];
        if moe {
            meta.push((keys[5].as_str(), Meta::U32(8)));
            meta.push((keys[6].as_str(), Meta::U32(2)));
        }
        let names: Vec<[String; 7]> = (0..2)
            .map(|l| {
                [
                    "attn_q",
                    "attn_k",
                    "attn_v",
                    "attn_output",
                    "ffn_gate",
                    "ffn_up",
                    "ffn_down",
                ]
                .map(|t| {
                    let t = if moe && t.starts_with("ffn_") {
                        format!("{t}_exps")
                    } else {
                        t.to_string()
                    };
                    format!("blk.{l}.{t}.weight")
                })
            })
            .collect();
        let norms: Vec<String> = (0..2)
            .map(|l| format!("blk.{l}.attn_norm.weight"))
            .collect();
        let mut tensors: Vec<(&str, Vec<u64>, u32)> =
            vec![("token_embd.weight", vec![64, 100], Q4_1)];
        if !tied {
            tensors.push(("output.weight", vec![64, 100], F16));
        }
        tensors.push(("output_norm.weight", vec![64], F32));
        for (l, n) in names.iter().enumerate() {
            tensors.push((norms[l].as_str(), vec![64], F32));
            tensors.push((n[0].as_str(), vec![64, 64], Q4_1));
            tensors.push((n[1].as_str(), vec![64, 32], Q4_1));
            tensors.push((n[2].as_str(), vec![64, 32], Q4_1));
            tensors.push((n[3].as_str(), vec![64, 64], Q4_1));
            let ffn: Vec<u64> = if moe { vec![64, 128, 8] } else { vec![64, 128] };
            let down: Vec<u64> = if moe { vec![128, 64, 8] } else { vec![128, 64] };
            tensors.push((n[4].as_str(), ffn.clone(), Q4_1));
            tensors.push((n[5].as_str(), ffn, Q4_1));
            tensors.push((n[6].as_str(), down, Q4_1));
        }
        let t: Vec<(&str, &[u64], u32)> = tensors
            .iter()
            .map(|(n, d, ty)| (*n, d.as_slice(), *ty))
            .collect();
        write_gguf(&meta, &t)
    }

    /// Q4_1: 20 bytes per 32 elements.
    fn q41(n: u64) -> u64 {
        n / 32 * 20
    }

    #[test]
    fn dense_model_reads_every_weight_but_the_embedding_rows() {
        let info = read(&model(false, false));
        let t = DecodeTraffic::from_gguf(&info).expect("traffic");
        let embd = q41(64 * 100);
        let output = 64 * 100 * 2;
        let norms = 3 * 64 * 4;
        let attn = q41(64 * 64) * 2 + q41(64 * 32) * 2;
        let ffn = q41(64 * 128) * 3;
        let file = embd + output + norms + 2 * (attn + ffn);
        assert_eq!(t.file_tensor_bytes, file);
        // One row of the embedding (64 elements of Q4_1 = 40 bytes) instead of all 100.
        assert_eq!(t.weight_bytes, file - embd + q41(64));
        assert_eq!(t.lookup_skipped_bytes, embd - q41(64));
        assert!(!t.tied_output);
        assert!(t.experts.is_none());
        // 2 layers x 2 KV heads x (16 + 16) dims (64 / 4 heads) x 2 bytes.
        assert_eq!(t.kv_layers, 2);
        assert_eq!(t.kv_bytes_per_position, 2 * 2 * 32 * 2);
        assert_eq!(t.bytes_at_depth(100.0), (t.weight_bytes + 100 * 256) as f64);
    }

    #[test]
    fn tied_output_reads_the_whole_embedding() {
        let info = read(&model(false, true));
        let t = DecodeTraffic::from_gguf(&info).expect("traffic");
        assert!(t.tied_output);
        assert_eq!(t.lookup_skipped_bytes, 0);
        assert_eq!(t.weight_bytes, t.file_tensor_bytes);
    }

    #[test]
    fn moe_counts_only_the_active_experts() {
        let info = read(&model(true, false));
        let t = DecodeTraffic::from_gguf(&info).expect("traffic");
        let e = t.experts.clone().expect("experts");
        assert_eq!((e.count, e.used), (8, 2));
        // Per layer three expert tensors of 8 x 64 x 128 Q4_1 elements.
        let per_layer = 3 * q41(64 * 128 * 8);
        assert_eq!(e.file_bytes, 2 * per_layer);
        assert_eq!(e.active_bytes, 2 * per_layer / 4);
        let embd = q41(64 * 100);
        let dense = 64 * 100 * 2 + 3 * 64 * 4 + 2 * (q41(64 * 64) * 2 + q41(64 * 32) * 2);
        assert_eq!(t.file_tensor_bytes, embd + dense + e.file_bytes);
        // The same model read densely would count all 8 experts: 4x the expert bytes.
        assert_eq!(t.weight_bytes, q41(64) + dense + e.file_bytes / 4);
    }
}
