//! Finding GGUF models: llmtop's own models dir, then what the user already has from Ollama,
//! the Hugging Face cache and LM Studio.

use crate::engine::gguf;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The model `scripts/fetch-model.sh` installs.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// What to tell a user who has no model at all.
pub const HOW_TO_GET_A_MODEL: &str = "no GGUF model found. Get the default one (SmolLM2-135M-Instruct, 98 MB) with \
`scripts/fetch-model.sh`, or pass any GGUF file with --model PATH (or `model.path` in the config, or \
$LLMTOP_MODEL). llmtop also finds models pulled with Ollama (~/.ollama/models), downloaded into the \
Hugging Face cache (~/.cache/huggingface/hub) or LM Studio (~/.lmstudio/models).";

/// Where a model was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Llmtop,
    Ollama,
    HuggingFace,
    LmStudio,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Llmtop => "llmtop",
            Origin::Ollama => "ollama",
            Origin::HuggingFace => "huggingface",
            Origin::LmStudio => "lm-studio",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoundModel {
    /// A readable name: the file stem, or `name:tag` for Ollama.
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// From the GGUF header; "invalid: <why>" when the header cannot be read.
    pub quantization: String,
    pub origin: Origin,
}

/// The directories searched; built from the environment, or by tests.
#[derive(Debug, Clone)]
pub struct SearchRoots {
    pub llmtop: PathBuf,
    pub ollama: PathBuf,
    pub huggingface: PathBuf,
    pub lmstudio: Vec<PathBuf>,
}

impl SearchRoots {
    pub fn from_env() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        let var = |k: &str| std::env::var_os(k).map(PathBuf::from);
        Self {
            llmtop: crate::util::paths::models_dir(),
            ollama: var("OLLAMA_MODELS").unwrap_or_else(|| home.join(".ollama/models")),
            huggingface: var("HF_HUB_CACHE")
                .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
                .unwrap_or_else(|| home.join(".cache/huggingface/hub")),
            lmstudio: vec![
                home.join(".lmstudio/models"),
                home.join(".cache/lm-studio/models"),
            ],
        }
    }
}

/// Every GGUF model under the roots, llmtop's own first, the default model first of those.
pub fn discover(roots: &SearchRoots) -> Vec<FoundModel> {
    let mut found = Vec::new();
    let mut own = gguf_files(&roots.llmtop, 1);
    own.sort_by_key(|p| {
        (
            p.file_name() != Some(DEFAULT_MODEL_FILE.as_ref()),
            p.clone(),
        )
    });
    found.extend(own.into_iter().map(|p| candidate(p, Origin::Llmtop)));
    found.extend(ollama_models(&roots.ollama));
    // HF cache: models--org--name/snapshots/<rev>/*.gguf (symlinks into blobs/).
    let mut hf = gguf_files(&roots.huggingface, 4);
    hf.sort();
    found.extend(hf.into_iter().map(|p| candidate(p, Origin::HuggingFace)));
    for root in &roots.lmstudio {
        let mut lm = gguf_files(root, 3);
        lm.sort();
        found.extend(lm.into_iter().map(|p| candidate(p, Origin::LmStudio)));
    }
    found
}

/// A `.gguf` entry found in a directory: a dangling link (a Hugging Face snapshot whose blob
/// was deleted) is named as such; everything else goes through the GGUF reader, which also
/// refuses FIFOs and devices.
fn candidate(path: PathBuf, origin: Origin) -> FoundModel {
    let dangling = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
        && std::fs::metadata(&path).is_err();
    if dangling {
        let target = std::fs::read_link(&path).unwrap_or_default();
        let why = format!(
            "broken link to {} (the file it points to is gone; download the model again)",
            target.display()
        );
        return broken(path.clone(), stem(&path), origin, why);
    }
    describe(path, None, origin)
}

/// A place that should hold a model and does not: listed as invalid with `why`, so
/// `llmtop models` says what is wrong instead of leaving it out.
fn broken(path: PathBuf, name: String, origin: Origin, why: String) -> FoundModel {
    FoundModel {
        name,
        path,
        size: 0,
        quantization: format!("invalid: {why}"),
        origin,
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn describe(path: PathBuf, name: Option<String>, origin: Origin) -> FoundModel {
    let (size, quantization) = match gguf::read(&path) {
        Ok(info) => (info.file_size, info.quantization()),
        Err(e) => (
            std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            format!("invalid: {}", short_reason(&e)),
        ),
    };
    FoundModel {
        name: name.unwrap_or_else(|| stem(&path)),
        path,
        size,
        quantization,
        origin,
    }
}

fn short_reason(e: &gguf::GgufError) -> String {
    let s = e.to_string();
    // Drop the leading "path: " the error carries for command-line use.
    match s.split_once(": ") {
        Some((_, rest)) => rest.to_string(),
        None => s,
    }
}

/// `.gguf` entries below `dir`, at most `depth` levels down, skipping vision projectors
/// (mmproj), which are not language models. Follows symlinked files, not symlinked dirs;
/// keeps broken links and special files so they are reported, not dropped.
fn gguf_files(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            if depth > 1 {
                out.extend(gguf_files(&path, depth - 1));
            }
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_lowercase();
        // A link to a directory is a directory here, not a model.
        if name.ends_with(".gguf") && !name.contains("mmproj") && !path.is_dir() {
            out.push(path);
        }
    }
    out
}

/// Ollama: manifests/<registry>/<namespace>/<model>/<tag> are JSON naming a model layer by
/// digest; the weights are blobs/sha256-<hex>, a plain GGUF file.
fn ollama_models(root: &Path) -> Vec<FoundModel> {
    let mut out = Vec::new();
    let manifests = root.join("manifests");
    let mut files = Vec::new();
    collect_files(&manifests, 4, &mut files);
    files.sort();
    for manifest in files {
        let rel = manifest.strip_prefix(&manifests).unwrap_or(&manifest);
        let parts: Vec<_> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let name = match parts.as_slice() {
            [.., model, tag] => format!("{model}:{tag}"),
            _ => rel.display().to_string(),
        };
        match ollama_blob(root, &manifest) {
            Ok(blob) => out.push(describe(blob, Some(name), Origin::Ollama)),
            Err(why) => out.push(broken(manifest, name, Origin::Ollama, why)),
        }
    }
    out
}

/// The GGUF file behind an Ollama model name ("llama3.2:latest", "user/model:tag",
/// "host/ns/model:tag") in the store at `root`, when its manifest and blob are there.
pub fn ollama_model_file(root: &Path, name: &str) -> Option<PathBuf> {
    let (path, tag) = name.rsplit_once(':').unwrap_or((name, "latest"));
    let parts: Vec<&str> = path.split('/').collect();
    if parts
        .iter()
        .chain([&tag])
        .any(|p| p.is_empty() || p.starts_with('.'))
    {
        return None;
    }
    let rel = match parts.as_slice() {
        [model] => format!("registry.ollama.ai/library/{model}"),
        [ns, model] => format!("registry.ollama.ai/{ns}/{model}"),
        [host, ns, model] => format!("{host}/{ns}/{model}"),
        _ => return None,
    };
    ollama_blob(root, &root.join("manifests").join(rel).join(tag)).ok()
}

/// The model blob an Ollama manifest names, or why it names none usable.
fn ollama_blob(root: &Path, manifest: &Path) -> Result<PathBuf, String> {
    let repull = "run `ollama pull` for it again, or `ollama rm` it";
    let text = crate::util::fs::read_capped(manifest, crate::util::fs::limits::MANIFEST)
        .map_err(|e| format!("manifest {}", e.reason()))?;
    let json = serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| format!("manifest is not valid JSON ({e}); {repull}"))?;
    let digest = json
        .get("layers")
        .and_then(|l| l.as_array())
        .and_then(|layers| {
            layers.iter().find_map(|l| {
                (l.get("mediaType")?.as_str()? == "application/vnd.ollama.image.model")
                    .then(|| l.get("digest")?.as_str())
                    .flatten()
            })
        })
        .ok_or_else(|| format!("manifest names no model layer; {repull}"))?;
    // The digest becomes a file name: anything but a plain name could point outside blobs/.
    let file = digest.replace(':', "-");
    if file.is_empty() || file.contains('/') || file.starts_with('.') {
        return Err(format!(
            "manifest has a malformed digest {digest:?}; {repull}"
        ));
    }
    let blob = root.join("blobs").join(file);
    if std::fs::symlink_metadata(&blob).is_err() {
        return Err(format!(
            "model blob {} is missing; {repull}",
            blob.display()
        ));
    }
    Ok(blob)
}

fn collect_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() && depth > 0 {
            collect_files(&entry.path(), depth - 1, out);
        } else if !ft.is_dir() {
            // Special files too: the reader refuses them with a reason.
            out.push(entry.path());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Smallest file the GGUF reader accepts: header, one metadata key, no tensors. Shared
    /// with the settings tests in `config::engine`.
    pub(crate) fn write_gguf(path: &Path, file_type: u32) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        let mut v = Vec::new();
        v.extend_from_slice(b"GGUF");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes());
        let key = "general.file_type";
        v.extend_from_slice(&(key.len() as u64).to_le_bytes());
        v.extend_from_slice(key.as_bytes());
        v.extend_from_slice(&4u32.to_le_bytes());
        v.extend_from_slice(&file_type.to_le_bytes());
        std::fs::File::create(path)
            .and_then(|mut f| f.write_all(&v))
            .expect("write gguf");
    }

    fn roots(base: &Path) -> SearchRoots {
        SearchRoots {
            llmtop: base.join("llmtop/models"),
            ollama: base.join("ollama"),
            huggingface: base.join("hf/hub"),
            lmstudio: vec![base.join("lmstudio/models")],
        }
    }

    #[test]
    fn an_ollama_name_leads_to_its_blob() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path().join("ollama");
        let manifest = |rel: &str, digest: &str| {
            let p = root.join("manifests").join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(
                &p,
                format!(
                    r#"{{"layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"{digest}"}}]}}"#
                ),
            )
            .expect("manifest");
        };
        write_gguf(&root.join("blobs/sha256-aaa"), 2);
        write_gguf(&root.join("blobs/sha256-bbb"), 2);
        manifest("registry.ollama.ai/library/smollm2/135m", "sha256:aaa");
        manifest("registry.ollama.ai/library/llama3.2/latest", "sha256:bbb");
        manifest("registry.ollama.ai/someone/tiny/q4", "sha256:aaa");
        let blob = |name: &str| ollama_model_file(&root, name);
        assert_eq!(blob("smollm2:135m"), Some(root.join("blobs/sha256-aaa")));
        // Ollama's implied tag, and a user's namespace.
        assert_eq!(blob("llama3.2"), Some(root.join("blobs/sha256-bbb")));
        assert_eq!(blob("someone/tiny:q4"), Some(root.join("blobs/sha256-aaa")));
        assert_eq!(blob("missing:1b"), None);
        // Nothing outside the store.
        assert_eq!(blob("../../etc:passwd"), None);
        assert_eq!(blob("smollm2:.."), None);
    }

    #[test]
    fn finds_models_in_every_store_with_quantisation() {
        let dir = tempfile::tempdir().expect("dir");
        let b = dir.path();
        write_gguf(&b.join("llmtop/models/other.gguf"), 15);
        write_gguf(&b.join("llmtop/models").join(DEFAULT_MODEL_FILE), 3);
        // Ollama: a manifest pointing at a blob.
        let digest = "sha256:abc123";
        write_gguf(&b.join("ollama/blobs/sha256-abc123"), 2);
        let manifest = b.join("ollama/manifests/registry.ollama.ai/library/smollm2/135m");
        std::fs::create_dir_all(manifest.parent().expect("parent")).expect("mkdir");
        std::fs::write(
            &manifest,
            format!(
                r#"{{"layers":[{{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:t"}},
                {{"mediaType":"application/vnd.ollama.image.model","digest":"{digest}"}}]}}"#
            ),
        )
        .expect("manifest");
        write_gguf(
            &b.join("hf/hub/models--org--tiny/snapshots/rev1/tiny-Q8_0.gguf"),
            7,
        );
        write_gguf(
            &b.join("hf/hub/models--org--tiny/snapshots/rev1/mmproj-f16.gguf"),
            1,
        );
        write_gguf(&b.join("lmstudio/models/pub/repo/m.gguf"), 18);
        std::fs::write(b.join("lmstudio/models/pub/repo/broken.gguf"), b"nope").expect("w");

        let found = discover(&roots(b));
        let summary: Vec<_> = found
            .iter()
            .map(|m| (m.origin, m.name.as_str(), m.quantization.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Origin::Llmtop, "SmolLM2-135M-Instruct.Q4_1", "Q4_1"),
                (Origin::Llmtop, "other", "Q4_K_M"),
                (Origin::Ollama, "smollm2:135m", "Q4_0"),
                (Origin::HuggingFace, "tiny-Q8_0", "Q8_0"),
                (
                    Origin::LmStudio,
                    "broken",
                    "invalid: not a GGUF file (no GGUF magic; llmtop runs llama.cpp GGUF models)"
                ),
                (Origin::LmStudio, "m", "Q6_K"),
            ]
        );
    }

    #[test]
    fn broken_ollama_manifests_and_dangling_links_are_listed_with_the_reason() {
        let dir = tempfile::tempdir().expect("dir");
        let b = dir.path();
        let lib = b.join("ollama/manifests/registry.ollama.ai/library");
        std::fs::create_dir_all(lib.join("junk")).expect("mkdir");
        std::fs::create_dir_all(lib.join("gone")).expect("mkdir");
        std::fs::write(lib.join("junk/latest"), "{not json").expect("w");
        std::fs::write(
            lib.join("gone/7b"),
            r#"{"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:dead"}]}"#,
        )
        .expect("w");
        let snap = b.join("hf/hub/models--org--tiny/snapshots/rev1");
        std::fs::create_dir_all(&snap).expect("mkdir");
        std::os::unix::fs::symlink("../../blobs/feed", snap.join("tiny-Q4_0.gguf")).expect("link");

        let found = discover(&roots(b));
        let summary: Vec<_> = found
            .iter()
            .map(|m| (m.origin, m.name.as_str(), m.quantization.as_str()))
            .collect();
        let blob = b.join("ollama/blobs/sha256-dead");
        assert_eq!(
            summary,
            vec![
                (
                    Origin::Ollama,
                    "gone:7b",
                    format!(
                        "invalid: model blob {} is missing; run `ollama pull` for it again, or `ollama rm` it",
                        blob.display()
                    )
                    .as_str()
                ),
                (
                    Origin::Ollama,
                    "junk:latest",
                    "invalid: manifest is not valid JSON (key must be a string at line 1 column 2); run `ollama pull` for it again, or `ollama rm` it"
                ),
                (
                    Origin::HuggingFace,
                    "tiny-Q4_0",
                    "invalid: broken link to ../../blobs/feed (the file it points to is gone; download the model again)"
                ),
            ]
        );
        assert_eq!(found[1].path, lib.join("junk/latest"));
    }
}
