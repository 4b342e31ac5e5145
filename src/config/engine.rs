//! Engine settings resolved once: the model (CLI, config, `$LLMTOP_MODEL`, then discovery) and
//! every generation setting, CLI over config over defaults, checked before anything loads.

use crate::cli::EngineArgs;
use crate::config::RawConfig;
use crate::engine::EngineSettings;
use crate::engine::models::{FoundModel, HOW_TO_GET_A_MODEL, SearchRoots, discover};
use crate::engine::remote::client::Server;
use crate::engine::remote::engine::AttachSettings;
use crate::engine::remote::kind::{KIND_NAMES, Kind};
use std::path::PathBuf;

/// Why no settings could be made: one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    NoModel(&'static str),
    #[error("{flag} {value}: {why}")]
    Bad {
        flag: &'static str,
        value: String,
        why: String,
    },
    #[error("{0}")]
    Model(String),
    /// `LLMTOP_MODEL=""`: set, but naming nothing.
    #[error(
        "LLMTOP_MODEL is set but empty; set it to a GGUF file (LLMTOP_MODEL=/path/model.gguf) or unset it"
    )]
    EmptyEnvModel,
    #[error("{0} is empty; give the path of a GGUF file")]
    EmptyModel(&'static str),
    /// A value from the config file (validated configs never get here; a `RawConfig` built in
    /// code might).
    #[error("{key} = {value} in the config: {why}")]
    BadConfig {
        key: &'static str,
        value: String,
        why: String,
    },
}

/// Pick the model (`--model`, config `model.path`, `$LLMTOP_MODEL`, then discovery) and merge
/// settings: CLI over config over defaults. Checks the model file and the numbers.
pub fn resolve_settings(
    args: &EngineArgs,
    cfg: &RawConfig,
) -> Result<EngineSettings, SettingsError> {
    resolve_with(
        args,
        cfg,
        std::env::var_os("LLMTOP_MODEL").map(PathBuf::from),
        || discover(&SearchRoots::from_env()),
    )
}

fn resolve_with(
    args: &EngineArgs,
    cfg: &RawConfig,
    env_model: Option<PathBuf>,
    discover: impl FnOnce() -> Vec<FoundModel>,
) -> Result<EngineSettings, SettingsError> {
    let empty = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str().is_empty());
    if empty(&args.model) {
        return Err(SettingsError::EmptyModel("--model"));
    }
    if args.model.is_none() {
        if empty(&cfg.model.path) {
            return Err(SettingsError::EmptyModel("model.path in the config"));
        }
        if cfg.model.path.is_none() && empty(&env_model) {
            return Err(SettingsError::EmptyEnvModel);
        }
    }
    let model = match args
        .model
        .clone()
        .or_else(|| cfg.model.path.clone())
        .or(env_model)
    {
        Some(p) => p,
        None => discover()
            .into_iter()
            .find(|m| !m.quantization.starts_with("invalid"))
            .map(|m| m.path)
            .ok_or(SettingsError::NoModel(HOW_TO_GET_A_MODEL))?,
    };
    let s = merge(args, cfg, model)?;
    crate::engine::llama::validate(&s).map_err(SettingsError::Model)?;
    Ok(s)
}

/// The settings for `--attach`: sampling, max tokens and the system prompt as for a local
/// model (CLI over config over defaults), and where to attach, checked. `None` when not
/// attached (no `--attach`, no `[backend] attach`).
pub fn resolve_attach(
    args: &EngineArgs,
    attach: Option<&str>,
    kind: Option<&str>,
    cfg: &RawConfig,
) -> Result<Option<(EngineSettings, AttachSettings)>, SettingsError> {
    let b = &cfg.backend;
    let Some(url) = attach.map(str::to_string).or_else(|| b.attach.clone()) else {
        if let Some(k) = kind {
            return Err(SettingsError::Bad {
                flag: "--kind",
                value: crate::util::sanitize::terminal(k).into_owned(),
                why: "names a server's kind: give the server with --attach URL too".into(),
            });
        }
        return Ok(None);
    };
    let server = Server::parse(&url).map_err(|e| SettingsError::Model(e.to_string()))?;
    let kind = match kind {
        Some(k) => Some(Kind::parse(k).ok_or_else(|| SettingsError::Bad {
            flag: "--kind",
            value: crate::util::sanitize::terminal(k).into_owned(),
            why: format!("must be one of {KIND_NAMES}; leave it out to detect it"),
        })?),
        None => b.kind.as_deref().and_then(Kind::parse),
    };
    let model = match &args.model {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(SettingsError::EmptyModel("--model"));
        }
        Some(p) => Some(p.to_string_lossy().into_owned()),
        None => b.model.clone(),
    };
    let mut a = AttachSettings::new(server.base);
    a.kind = kind;
    a.model = model;
    let s = merge(args, cfg, PathBuf::new())?;
    Ok(Some((s, a)))
}

/// CLI over config over defaults, checked, for `model`.
fn merge(
    args: &EngineArgs,
    cfg: &RawConfig,
    model: PathBuf,
) -> Result<EngineSettings, SettingsError> {
    let mut s = EngineSettings::with_model(model);
    let m = &cfg.model;
    let sp = &cfg.sampling;
    s.n_ctx = args.n_ctx.or(m.n_ctx).unwrap_or(0);
    s.threads = args.threads.or(m.threads).unwrap_or(0);
    s.gpu_layers = args.gpu_layers.or(m.gpu_layers).unwrap_or(0);
    s.max_tokens = args.max_tokens.or(m.max_tokens).unwrap_or(s.max_tokens);
    if let Some(p) = args
        .system_prompt
        .clone()
        .or_else(|| m.system_prompt.clone())
    {
        s.system_prompt = p;
    }
    s.temperature = args.temperature.or(sp.temperature).unwrap_or(s.temperature);
    s.top_k = args.top_k.or(sp.top_k).unwrap_or(s.top_k);
    s.top_p = args.top_p.or(sp.top_p).unwrap_or(s.top_p);
    s.min_p = args.min_p.or(sp.min_p).unwrap_or(s.min_p);
    s.seed = args.seed.or(sp.seed).unwrap_or(s.seed);

    let bad = |flag, value: String, why: &str| SettingsError::Bad {
        flag,
        value,
        why: why.to_string(),
    };
    // A zero is named where it came from: the flag, or the config key.
    let zero = |cli: Option<u32>, conf: Option<u32>, flag, key, why: &str| {
        if cli == Some(0) {
            Err(bad(flag, "0".into(), why))
        } else if cli.is_none() && conf == Some(0) {
            Err(SettingsError::BadConfig {
                key,
                value: "0".into(),
                why: why.replace("leave it out", "remove the key"),
            })
        } else {
            Ok(())
        }
    };
    zero(
        args.n_ctx,
        m.n_ctx,
        "--n-ctx",
        "model.n_ctx",
        "must be at least 1; leave it out to use the model's context (up to 4096)",
    )?;
    zero(
        args.threads,
        m.threads,
        "--threads",
        "model.threads",
        "must be at least 1; leave it out to use all physical cores",
    )?;
    zero(
        args.max_tokens,
        m.max_tokens,
        "--max-tokens",
        "model.max_tokens",
        "must be at least 1",
    )?;
    if !(0.0..=5.0).contains(&s.temperature) {
        return Err(bad(
            "--temperature",
            s.temperature.to_string(),
            "must be between 0 (greedy) and 5",
        ));
    }
    if !(0.0..=1.0).contains(&s.top_p) || !(0.0..=1.0).contains(&s.min_p) {
        return Err(bad(
            "--top-p/--min-p",
            format!("{}/{}", s.top_p, s.min_p),
            "must be between 0 and 1",
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::models::tests::write_gguf;
    use crate::engine::models::{Origin, describe};
    use std::path::Path;

    #[test]
    fn resolution_order_is_cli_config_env_then_discovery() {
        let dir = tempfile::tempdir().expect("dir");
        let a = dir.path().join("a.gguf");
        let b = dir.path().join("b.gguf");
        let c = dir.path().join("c.gguf");
        let d = dir.path().join("d.gguf");
        for p in [&a, &b, &c, &d] {
            write_gguf(p, 3);
        }
        let found = |p: &Path| {
            let p = p.to_path_buf();
            move || vec![describe(p, None, Origin::Llmtop)]
        };
        let mut args = EngineArgs::default();
        let mut cfg = RawConfig::default();
        let pick = |args: &EngineArgs, cfg: &RawConfig, env: Option<PathBuf>| {
            resolve_with(args, cfg, env, found(&d))
                .expect("resolves")
                .model
        };
        assert_eq!(pick(&args, &cfg, None), d);
        assert_eq!(pick(&args, &cfg, Some(c.clone())), c);
        cfg.model.path = Some(b.clone());
        assert_eq!(pick(&args, &cfg, Some(c.clone())), b);
        args.model = Some(a.clone());
        assert_eq!(pick(&args, &cfg, Some(c.clone())), a);
    }

    #[test]
    fn no_model_anywhere_says_how_to_get_one() {
        let err = resolve_with(
            &EngineArgs::default(),
            &RawConfig::default(),
            None,
            Vec::new,
        )
        .expect_err("nothing found");
        assert!(err.to_string().contains("scripts/fetch-model.sh"), "{err}");
    }

    #[test]
    fn cli_overrides_config_and_zeroes_are_rejected() {
        let dir = tempfile::tempdir().expect("dir");
        let m = dir.path().join("m.gguf");
        write_gguf(&m, 3);
        let mut cfg = RawConfig::default();
        cfg.sampling.temperature = Some(0.2);
        cfg.model.threads = Some(3);
        let args = EngineArgs {
            model: Some(m.clone()),
            // Within the thread limit even on a single CPU (4 per CPU).
            threads: Some(4),
            ..Default::default()
        };
        let s = resolve_with(&args, &cfg, None, Vec::new).expect("ok");
        assert_eq!((s.threads, s.temperature), (4, 0.2));

        let too_many = EngineArgs {
            threads: Some(100_000),
            ..args.clone()
        };
        let e = resolve_with(&too_many, &cfg, None, Vec::new).expect_err("threads 100000");
        let limit = crate::engine::effective::thread_limit().0;
        assert!(
            e.to_string().starts_with(&format!(
                "--threads 100000: more than {limit} (4 per logical CPU"
            )),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains(&format!("use --threads {limit} or less")),
            "{e}"
        );
        let zero_threads = EngineArgs {
            threads: Some(0),
            ..args.clone()
        };
        let e = resolve_with(&zero_threads, &cfg, None, Vec::new).expect_err("threads 0");
        assert_eq!(
            e.to_string(),
            "--threads 0: must be at least 1; leave it out to use all physical cores"
        );
        let zero_ctx = EngineArgs {
            n_ctx: Some(0),
            ..args
        };
        let e = resolve_with(&zero_ctx, &cfg, None, Vec::new).expect_err("ctx 0");
        assert!(
            e.to_string().starts_with("--n-ctx 0: must be at least 1"),
            "{e}"
        );
        // From the config, the key is named, not the flag.
        cfg.model.threads = Some(0);
        let only_model = EngineArgs {
            model: Some(m.clone()),
            ..Default::default()
        };
        let e = resolve_with(&only_model, &cfg, None, Vec::new).expect_err("config threads 0");
        assert_eq!(
            e.to_string(),
            "model.threads = 0 in the config: must be at least 1; remove the key to use all physical cores"
        );
    }

    #[test]
    fn empty_model_paths_name_where_they_came_from() {
        let e = resolve_with(
            &EngineArgs::default(),
            &RawConfig::default(),
            Some(PathBuf::new()),
            Vec::new,
        )
        .expect_err("empty env");
        assert!(
            e.to_string().starts_with("LLMTOP_MODEL is set but empty"),
            "{e}"
        );
        let args = EngineArgs {
            model: Some(PathBuf::new()),
            ..Default::default()
        };
        let e = resolve_with(&args, &RawConfig::default(), None, Vec::new).expect_err("--model");
        assert_eq!(
            e.to_string(),
            "--model is empty; give the path of a GGUF file"
        );
    }

    #[test]
    fn attach_comes_from_the_flag_or_the_backend_section_with_the_model_by_name() {
        let mut args = EngineArgs::default();
        let mut cfg = RawConfig::default();
        assert!(
            resolve_attach(&args, None, None, &cfg)
                .expect("ok")
                .is_none()
        );
        let e = resolve_attach(&args, None, Some("ollama"), &cfg).expect_err("no server");
        assert!(e.to_string().contains("--attach URL"), "{e}");
        cfg.backend.attach = Some("127.0.0.1:11434/".into());
        cfg.backend.model = Some("qwen2.5:0.5b".into());
        cfg.backend.kind = Some("ollama".into());
        let (s, a) = resolve_attach(&args, None, None, &cfg)
            .expect("ok")
            .expect("attached");
        assert_eq!(a.url, "http://127.0.0.1:11434");
        assert_eq!(a.model.as_deref(), Some("qwen2.5:0.5b"));
        assert_eq!(a.kind, Some(Kind::Ollama));
        assert_eq!(s.max_tokens, 1024, "the usual defaults apply");
        // The flags win; --model is a name here, not a file.
        args.model = Some(PathBuf::from("llama3.2"));
        args.max_tokens = Some(64);
        let (s, a) = resolve_attach(&args, Some("http://box:8080"), Some("llama-server"), &cfg)
            .expect("ok")
            .expect("attached");
        assert_eq!(a.url, "http://box:8080");
        assert_eq!(a.model.as_deref(), Some("llama3.2"));
        assert_eq!(a.kind, Some(Kind::LlamaServer));
        assert_eq!(s.max_tokens, 64);
        let e = resolve_attach(&args, None, Some("tgi"), &cfg).expect_err("bad kind");
        assert!(
            e.to_string().starts_with("--kind tgi: must be one of"),
            "{e}"
        );
        let e = resolve_attach(&args, Some("ftp://x"), None, &cfg).expect_err("bad url");
        assert!(
            e.to_string().starts_with("--attach ftp://x: bad URL"),
            "{e}"
        );
    }
}
