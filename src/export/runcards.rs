//! Run cards over HTTP: `llmtop serve` answers `/runcards/` (the list, newest first),
//! `/runcards/latest.json` and `/runcards/<name>.json` from the snapshots dir, so `llmtop
//! compare http://host:9464` compares machines without copying files.
//!
//! Only files that parse as run cards are served, by plain file name (no paths), and without
//! their transcript: the conversation stays on the machine that had it.

use super::server::Reply;
use crate::report::runcard::RunCard;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Schema of the list at `/runcards/`.
pub const LIST_SCHEMA: &str = "llmtop.runcards/1";

/// One card in the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardEntry {
    /// File name, e.g. `20250601T100000Z-mini.json`.
    pub name: String,
    /// Path to GET it from the same server.
    pub url: String,
    pub created: String,
    pub host: String,
    pub model: String,
}

/// The list at `/runcards/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardList {
    pub schema: String,
    pub cards: Vec<CardEntry>,
}

/// The run cards of one snapshots dir.
#[derive(Debug, Clone)]
pub struct Shelf {
    dir: PathBuf,
}

impl Shelf {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// Every readable card, newest first (by `created`, then name).
    fn cards(&self) -> Vec<(String, RunCard)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut cards: Vec<(String, RunCard)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json"))
            .filter_map(|n| {
                let card = RunCard::load(&self.dir.join(&n)).ok()?;
                Some((n, card))
            })
            .collect();
        cards.sort_by(|a, b| {
            let t = |c: &RunCard| c.created.parse::<jiff::Timestamp>().ok();
            t(&b.1).cmp(&t(&a.1)).then_with(|| b.0.cmp(&a.0))
        });
        cards
    }

    pub fn list(&self) -> CardList {
        CardList {
            schema: LIST_SCHEMA.into(),
            cards: self
                .cards()
                .into_iter()
                .map(|(name, c)| CardEntry {
                    url: format!("/runcards/{name}"),
                    name,
                    created: c.created,
                    host: c.host.hostname,
                    model: c.model.name,
                })
                .collect(),
        }
    }

    /// The card named `name` (a plain file name), as served: without its transcript.
    fn card(&self, name: &str) -> Option<RunCard> {
        let plain = !name.is_empty()
            && name.ends_with(".json")
            && !name.starts_with('.')
            && !name.contains(['/', '\\']);
        if !plain {
            return None;
        }
        RunCard::load(&self.dir.join(name)).ok()
    }

    /// Answer a GET under `/runcards`; `None` for other paths.
    pub fn route(&self, path: &str) -> Option<Reply> {
        let rest = path.strip_prefix("/runcards")?;
        let json = |body: String| Reply {
            status: 200,
            content_type: "application/json",
            body,
        };
        let card = match rest {
            "" | "/" => {
                let list = serde_json::to_string_pretty(&self.list()).unwrap_or_default();
                return Some(json(list));
            }
            "/latest.json" => self.cards().into_iter().next().map(|(_, c)| c),
            other => other.strip_prefix('/').and_then(|n| self.card(n)),
        };
        Some(match card {
            Some(mut c) => {
                c.transcript = None;
                json(c.to_json())
            }
            None => Reply::text(
                404,
                "no such run card; GET /runcards/ lists them (write one with Ctrl-S in the dashboard or `llmtop bench --snapshot`)\n",
            ),
        })
    }
}
