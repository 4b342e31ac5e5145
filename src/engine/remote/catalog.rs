//! What a server offers (`/api/tags`, `/v1/models`, LM Studio's `/api/v0/models`) and what it
//! has loaded and where (Ollama's `/api/ps`: `size` against `size_vram`).

use super::client::{RemoteError, Server};
use super::kind::Kind;
use crate::engine::LoadedModel;
use serde::{Deserialize, Serialize};

/// One model the server can answer with.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RemoteModel {
    pub name: String,
    /// Bytes (file or weights), when the server says.
    pub size: Option<u64>,
    /// "3.2B" (Ollama's parameter_size) or the count llama-server reports.
    pub n_params: Option<u64>,
    pub quantization: Option<String>,
    pub family: Option<String>,
    pub n_ctx_train: Option<u32>,
    /// LM Studio says which are loaded; `None` where the list does not.
    pub loaded: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OllamaList {
    models: Vec<OllamaModel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OllamaModel {
    name: String,
    model: String,
    size: Option<u64>,
    size_vram: Option<u64>,
    context_length: Option<u32>,
    /// `/api/ps`: when the model unloads (its `keep_alive` after the last request), RFC 3339.
    expires_at: Option<String>,
    details: OllamaDetails,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OllamaDetails {
    family: Option<String>,
    parameter_size: Option<String>,
    quantization_level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OpenAiList {
    data: Vec<OpenAiModel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OpenAiModel {
    id: String,
    // llama-server
    meta: Option<LlamaMeta>,
    // LM Studio
    state: Option<String>,
    quantization: Option<String>,
    arch: Option<String>,
    max_context_length: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LlamaMeta {
    n_params: Option<u64>,
    size: Option<u64>,
    n_ctx_train: Option<u32>,
}

/// "3.2B" → 3 200 000 000; "135M" → 135 000 000.
pub fn parse_params(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()?.to_ascii_uppercase() {
        'B' => (&s[..s.len() - 1], 1e9),
        'M' => (&s[..s.len() - 1], 1e6),
        'K' => (&s[..s.len() - 1], 1e3),
        _ => (s, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * mul).round() as u64)
}

fn parse<T: serde::de::DeserializeOwned>(server: &Server, path: &str) -> Result<T, RemoteError> {
    let v = server.get_json(path)?;
    serde_json::from_value(v).map_err(|e| server.not_json(path, e))
}

/// The models the server offers.
pub fn list(server: &Server, kind: Kind) -> Result<Vec<RemoteModel>, RemoteError> {
    match kind {
        Kind::Ollama => {
            let l: OllamaList = parse(server, "/api/tags")?;
            Ok(l.models.into_iter().map(from_ollama).collect())
        }
        Kind::LmStudio | Kind::LlamaServer | Kind::OpenAi => {
            let path = if kind == Kind::LmStudio {
                "/api/v0/models"
            } else {
                "/v1/models"
            };
            let l: OpenAiList = parse(server, path)?;
            Ok(l.data
                .into_iter()
                .map(|m| RemoteModel {
                    n_params: m.meta.as_ref().and_then(|x| x.n_params),
                    size: m.meta.as_ref().and_then(|x| x.size),
                    n_ctx_train: m
                        .meta
                        .as_ref()
                        .and_then(|x| x.n_ctx_train)
                        .or(m.max_context_length),
                    quantization: m.quantization,
                    family: m.arch,
                    // llama-server serves the one model it was started with.
                    loaded: match kind {
                        Kind::LlamaServer => Some(true),
                        _ => m.state.map(|s| s == "loaded"),
                    },
                    name: m.id,
                })
                .collect())
        }
    }
}

fn from_ollama(m: OllamaModel) -> RemoteModel {
    RemoteModel {
        name: if m.name.is_empty() { m.model } else { m.name },
        size: m.size,
        n_params: m.details.parameter_size.as_deref().and_then(parse_params),
        quantization: m.details.quantization_level,
        family: m.details.family,
        n_ctx_train: None,
        loaded: None,
    }
}

/// What the server has loaded, and where. Ollama says (`/api/ps`); LM Studio says which are
/// loaded; llama-server has its one model; a generic server does not say (empty).
pub fn loaded(server: &Server, kind: Kind) -> Result<Vec<LoadedModel>, RemoteError> {
    match kind {
        Kind::Ollama => {
            let l: OllamaList = parse(server, "/api/ps")?;
            Ok(l.models
                .into_iter()
                .map(|m| LoadedModel {
                    name: if m.name.is_empty() { m.model } else { m.name },
                    size: m.size,
                    size_vram: m.size_vram,
                    context_length: m.context_length,
                    expires_at: m.expires_at,
                })
                .collect())
        }
        Kind::LmStudio | Kind::LlamaServer => Ok(list(server, kind)?
            .into_iter()
            .filter(|m| m.loaded == Some(true))
            .map(|m| LoadedModel {
                name: m.name,
                size: m.size,
                size_vram: None,
                context_length: None,
                expires_at: None,
            })
            .collect()),
        Kind::OpenAi => Ok(Vec::new()),
    }
}

/// The context the server runs `model` with: llama-server's `/props`
/// (`default_generation_settings.n_ctx`, per slot), Ollama's `/api/ps` `context_length` once
/// loaded; `None` where the server does not say.
pub fn context_size(server: &Server, kind: Kind, model: &str) -> Option<u32> {
    match kind {
        Kind::LlamaServer => {
            let v = server.get_json("/props").ok()?;
            let n = v
                .get("default_generation_settings")?
                .get("n_ctx")?
                .as_u64()?;
            u32::try_from(n).ok()
        }
        Kind::Ollama => {
            loaded(server, kind)
                .ok()?
                .into_iter()
                .find(|l| l.name == model)?
                .context_length
        }
        Kind::LmStudio | Kind::OpenAi => None,
    }
}

/// `wanted` among `models`: the exact name, else Ollama's implied `:latest` tag, else the one
/// whose file name (llama-server lists a path) is `wanted`.
pub fn find<'a>(models: &'a [RemoteModel], wanted: &str) -> Option<&'a RemoteModel> {
    let latest = format!("{wanted}:latest");
    models
        .iter()
        .find(|m| m.name == wanted)
        .or_else(|| models.iter().find(|m| m.name == latest))
        .or_else(|| {
            models.iter().find(|m| {
                let file = m.name.rsplit('/').next().unwrap_or(&m.name);
                file == wanted || file.strip_suffix(".gguf") == Some(wanted)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sizes() {
        assert_eq!(parse_params("3.2B"), Some(3_200_000_000));
        assert_eq!(parse_params("135M"), Some(135_000_000));
        assert_eq!(parse_params("7"), Some(7));
        assert_eq!(parse_params("big"), None);
        assert_eq!(parse_params(""), None);
    }

    #[test]
    fn names_match_with_ollamas_latest_and_file_names() {
        let ms: Vec<RemoteModel> = ["llama3.2:latest", "qwen:7b", "/m/SmolLM2.gguf"]
            .iter()
            .map(|n| RemoteModel {
                name: n.to_string(),
                ..RemoteModel::default()
            })
            .collect();
        assert_eq!(
            find(&ms, "llama3.2").map(|m| m.name.as_str()),
            Some("llama3.2:latest")
        );
        assert_eq!(
            find(&ms, "qwen:7b").map(|m| m.name.as_str()),
            Some("qwen:7b")
        );
        assert_eq!(
            find(&ms, "SmolLM2").map(|m| m.name.as_str()),
            Some("/m/SmolLM2.gguf")
        );
        assert!(find(&ms, "qwen").is_none());
    }
}
