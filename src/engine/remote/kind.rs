//! Which server is at the address: each kind answers one endpoint the others do not.

use super::client::{RemoteError, Server};
use super::protocol::Api;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kinds of server attach speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Ollama,
    LlamaServer,
    #[serde(rename = "lmstudio")]
    LmStudio,
    /// Any other OpenAI-compatible server (vLLM, LocalAI, ...).
    #[serde(rename = "openai")]
    OpenAi,
}

/// The names `kind` takes in the config and on the command line.
pub const KIND_NAMES: &str = "ollama, llama-server, lmstudio, openai";

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ollama" => Some(Kind::Ollama),
            "llama-server" | "llama.cpp" | "llamacpp" | "llama_server" => Some(Kind::LlamaServer),
            "lmstudio" | "lm-studio" | "lm studio" => Some(Kind::LmStudio),
            "openai" | "openai-compatible" | "vllm" => Some(Kind::OpenAi),
            _ => None,
        }
    }

    /// For labels: "Ollama", "llama-server", "LM Studio", "OpenAI-compatible server".
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ollama => "Ollama",
            Kind::LlamaServer => "llama-server",
            Kind::LmStudio => "LM Studio",
            Kind::OpenAi => "OpenAI-compatible server",
        }
    }

    /// The config name.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Ollama => "ollama",
            Kind::LlamaServer => "llama-server",
            Kind::LmStudio => "lmstudio",
            Kind::OpenAi => "openai",
        }
    }

    /// The chat endpoint used for this kind: the one with the most figures.
    pub fn chat_api(self) -> Api {
        match self {
            Kind::Ollama => Api::OllamaChat,
            Kind::LlamaServer => Api::LlamaChat,
            Kind::LmStudio => Api::LmStudioChat,
            Kind::OpenAi => Api::OpenAiChat,
        }
    }

    /// The endpoint that identifies this kind.
    pub fn probe_path(self) -> &'static str {
        match self {
            Kind::Ollama => "/api/version",
            Kind::LlamaServer => "/props",
            Kind::LmStudio => "/api/v0/models",
            Kind::OpenAi => "/v1/models",
        }
    }

    /// Does this answer (to [`Kind::probe_path`]) come from this kind? Returns the version
    /// where the server tells it.
    fn recognise(self, v: &Value) -> Option<Option<String>> {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        match self {
            Kind::Ollama => v
                .get("version")
                .and_then(Value::as_str)
                .map(|x| Some(x.into())),
            Kind::LlamaServer => {
                let known = v.get("default_generation_settings").is_some()
                    || v.get("model_path").is_some()
                    || v.get("total_slots").is_some();
                known.then(|| s(v.get("build_info")))
            }
            Kind::LmStudio | Kind::OpenAi => v.get("data").filter(|d| d.is_array()).map(|_| None),
        }
    }
}

/// What is at the address.
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    pub kind: Kind,
    pub version: Option<String>,
}

impl Detected {
    /// "Ollama 0.5.7 at 127.0.0.1:11434".
    pub fn describe(&self, server: &Server) -> String {
        match &self.version {
            Some(v) if self.kind == Kind::Ollama => {
                format!("{} {} at {}", self.kind.name(), v, server.host_port)
            }
            _ => format!("{} at {}", self.kind.name(), server.host_port),
        }
    }
}

/// Ask `kind`'s identifying endpoint. `Ok(None)`: the server answers, but not as that kind.
fn try_kind(server: &Server, kind: Kind) -> Result<Option<Detected>, RemoteError> {
    let (status, body) = server.get(kind.probe_path())?;
    if !(200..300).contains(&status) {
        return Ok(None);
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return Ok(None);
    };
    Ok(kind.recognise(&v).map(|version| Detected { kind, version }))
}

/// Find the kind by asking each kind's own endpoint, most specific first. A server that is
/// down fails at the first probe, with that cause.
pub fn detect(server: &Server) -> Result<Detected, RemoteError> {
    for kind in [
        Kind::Ollama,
        Kind::LlamaServer,
        Kind::LmStudio,
        Kind::OpenAi,
    ] {
        if let Some(d) = try_kind(server, kind)? {
            return Ok(d);
        }
    }
    Err(RemoteError::Unrecognised {
        server: server.base.clone(),
        why: format!(
            "it answers, but not as Ollama, llama-server, LM Studio or an OpenAI-compatible server (asked /api/version, /props, /api/v0/models, /v1/models); check the address, or set kind ({KIND_NAMES}) in [backend]"
        ),
    })
}

/// The kind the user named, checked against the server: a wrong kind is one line that says
/// what the server looks like instead.
pub fn confirm(server: &Server, kind: Kind) -> Result<Detected, RemoteError> {
    if let Some(d) = try_kind(server, kind)? {
        return Ok(d);
    }
    // A generic OpenAI-compatible server is anything with /v1/models: llama-server, LM Studio
    // and Ollama all are.
    if kind == Kind::OpenAi
        && let Ok(d) = detect(server)
    {
        return Ok(Detected {
            kind: Kind::OpenAi,
            version: d.version,
        });
    }
    let looks = match detect(server) {
        Ok(d) => format!(
            "it looks like {}; set kind = \"{}\" or leave kind out",
            d.kind.name(),
            d.kind.key()
        ),
        Err(_) => "check the address".into(),
    };
    Err(RemoteError::Unrecognised {
        server: server.base.clone(),
        why: format!(
            "kind {} was asked for, but {} does not answer as one; {looks}",
            kind.key(),
            kind.probe_path()
        ),
    })
}
