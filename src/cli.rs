//! Command-line interface. `llmtop` alone opens the dashboard; subcommands do one job headless.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "llmtop",
    version,
    about = "Watch what a local LLM answer really costs: speed, watts, heat and money.",
    long_about = "llmtop runs a GGUF model in-process (llama.cpp) and shows, live, tokens/s beside \
the power drawn by GPU, CPU and wall, temperatures and fans, and the electricity cost where you live.\n\n\
Run without a subcommand to open the dashboard. Keys: Enter send, Alt+Enter newline, Esc cancel, \
Ctrl-S snapshot, Ctrl-L new chat, Ctrl-T theme, PgUp/PgDn scroll, F1 help, Ctrl-Q quit.",
    after_help = "Examples:\n  llmtop                         dashboard with the default model\n  \
llmtop bench --reps 3           the 1000-word-story benchmark, headless\n  \
llmtop sensors                  what power/temperature sources this machine has\n  \
llmtop doctor                   sensor self-test: what reads right, what to fix\n  \
llmtop models                   GGUF models found on this machine\n  \
llmtop --attach http://127.0.0.1:11434 --model llama3.2\n                                 \
chat through a running Ollama (or llama-server, LM Studio, vLLM)\n  \
llmtop models --attach URL      the models that server offers, and what it has loaded where\n  \
llmtop compare a.json b.json    compare run cards from several machines\n  \
llmtop --remote http://gpu:9464 http://mini:9464   watch other hosts' llmtop serve"
)]
pub struct Cli {
    /// Config file (default: ~/.config/llmtop/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the 1000-word-story benchmark headless and print a table (and JSON).
    Bench(BenchArgs),
    /// List GGUF models found on this machine, or a running server's models (--attach URL).
    Models(ModelsArgs),
    /// List every power, temperature and fan source found, with provenance.
    Sensors(SensorsArgs),
    /// Sensor self-test (5 s): each source readable or not with the exact fix, cross-checks,
    /// stuck/zero/jumping channels, real sampling periods; one verdict line per source.
    #[command(
        long_about = "A sensor self-test for a new machine, in under 10 s. Discovery finds the \
sources; then the sampler reads them for a few seconds and the energy ledger sums them, and \
doctor says, one line per source: readable or not and the exact fix (RAPL's root-only \
energy_uj, a container that masks powercap, a missing or mismatched NVIDIA driver, a plug that \
answers slowly); a counter set against its own power reading where a source has both; the wall \
plug against the sum of the parts; stuck, zero and jumping channels; the period each source \
really delivers. Then an overall line: what the whole-system total is measured from.\n\n\
Exit status: 0 every source readable and consistent, the total measured; 3 the total is \
measured but a source has something to fix; 4 the total is an estimate (or there is none); \
1 and 2 an error or a bad command line, as for every llmtop command.",
        after_help = "Examples:\n  llmtop doctor\n  llmtop doctor --json | jq .overall\n  \
sudo llmtop doctor              as root, RAPL is readable even where it is root-only"
    )]
    Doctor(DoctorArgs),
    /// Compare run cards (snapshots) from different machines side by side.
    Compare(CompareArgs),
    /// Serve sensor and energy metrics for Prometheus, without the dashboard.
    Serve(ServeArgs),
    /// Watch a running llama-server: tokens, energy and J/token for all of its clients.
    #[command(
        long_about = "Watch a llama.cpp llama-server that is already running, without a proxy: every \
interval, read its /metrics counters (tokens processed for all of its clients) beside this \
machine's energy from the sensors, and print the tokens, the joules and J/token; at the end \
(--duration, or Ctrl-C) the totals.\n\n\
The server must be started with --metrics (llama-server -m MODEL --metrics); without it there \
is no /metrics to read. The server counts a request's prompt tokens once the prompt is \
evaluated and its generated tokens once it finishes: a long request counts where those fall.\n\n\
J/token here is the whole machine's energy over every client's tokens: an attribution, not a \
per-request measurement (for per-request figures use llmtop proxy). When the server runs on \
this machine, its process's share of the CPU-package and GPU energy is shown too (Kepler's \
split: active energy x its share of busy CPU time and of GPU SM use), also an attribution."
    )]
    Watch(WatchArgs),
    /// The share of this machine's energy drawn by the server listening at a URL (attribution).
    #[command(
        long_about = "Find the process that listens at URL on this machine (from /proc/net/tcp and \
/proc/PID/fd), sample this machine's sensors for a few seconds, and print that process's share \
of the energy beside the machine's total.\n\n\
The share is an attribution (Kepler's split), not a measurement: the CPU package's energy above \
its idle floor x the process's share of the busy CPU time, and the NVIDIA GPU boards' energy \
above idle x its share of the SM use NVML reports per process. Idle power, DRAM, disks, fans \
and power-supply losses are not attributed. Another user's server can only be found as that \
user or as root."
    )]
    Share(ShareArgs),
    /// Price every request to a model server: a streaming reverse proxy that records each
    /// request's tokens, speed, energy and cost.
    #[command(
        long_about = "A transparent streaming reverse proxy for Ollama's API and OpenAI-compatible \
    endpoints (llama-server, LM Studio, vLLM). Point your clients at --listen instead of the server: \
    every request and response passes through byte for byte, streamed chunk by chunk, while llmtop \
    reads the stream to learn each request's model, tokens (prompt, cached, generated), time to \
    first token and speeds.\n\n\
    llmtop samples this machine's sensors meanwhile and gives each request its share of the energy: \
    within each sampling interval, the machine's energy (net of idle when an idle baseline was \
    measured in the first seconds) is split between the requests active in it by the tokens each \
    processed, prompt tokens weighted by their measured cost from the server's timings. That is an \
    attribution, not a measurement, and every record says so. Records (schema llmtop.request/1, see \
    README) are appended to requests.jsonl in the data dir; --metrics-addr serves them to Prometheus.",
        after_help = "Examples:\n  \
    llmtop proxy                                   Ollama on 11434, clients use 11435\n  \
    llmtop proxy --upstream http://127.0.0.1:8080  in front of llama-server\n  \
    OLLAMA_HOST=127.0.0.1:11435 ollama run llama3  a client through the proxy\n  \
    llmtop proxy --metrics-addr 127.0.0.1:9464     also serve Prometheus metrics"
    )]
    Proxy(ProxyArgs),
    /// Test helper: write the lifetime tally in a loop (for the kill -9 test).
    #[command(name = "__tally-writer", hide = true)]
    TallyWriter(TallyWriterArgs),
}

/// Model and generation settings shared by the dashboard and bench.
#[derive(Debug, Clone, Args, Default)]
pub struct EngineArgs {
    /// GGUF model file (default: config, $LLMTOP_MODEL, then the first model found). With
    /// --attach: the server's model by name, e.g. llama3.2 (default: the one it has loaded).
    #[arg(long, short = 'm', value_name = "PATH|NAME")]
    pub model: Option<PathBuf>,
    /// Context size in tokens (default: the model's, capped at 4096).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = count)]
    pub n_ctx: Option<u32>,
    /// CPU threads for generation (default: physical cores).
    #[arg(long, short = 't', value_name = "N", allow_negative_numbers = true, value_parser = count)]
    pub threads: Option<u32>,
    /// Layers to offload to the GPU (needs a cuda/vulkan/metal build).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = whole)]
    pub gpu_layers: Option<u32>,
    /// Sampling temperature; 0 = greedy (repeatable).
    #[arg(long, value_name = "T", allow_negative_numbers = true, value_parser = number_f32)]
    pub temperature: Option<f32>,
    /// Sample only from the K most likely tokens (default 40; 0 = off).
    #[arg(long, value_name = "K", allow_negative_numbers = true, value_parser = integer)]
    pub top_k: Option<i32>,
    /// Nucleus sampling: the smallest set of tokens with probability mass P (default 0.95).
    #[arg(long, value_name = "P", allow_negative_numbers = true, value_parser = number_f32)]
    pub top_p: Option<f32>,
    /// Drop tokens less likely than P times the top token (default 0.05).
    #[arg(long, value_name = "P", allow_negative_numbers = true, value_parser = number_f32)]
    pub min_p: Option<f32>,
    /// Sampler seed; a fixed seed gives repeatable output.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = whole)]
    pub seed: Option<u32>,
    /// Stop a reply after this many tokens.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = count)]
    pub max_tokens: Option<u32>,
    /// System prompt.
    #[arg(long, value_name = "TEXT")]
    pub system_prompt: Option<String>,
}

/// Sensor options shared by the dashboard, bench, sensors and serve.
#[derive(Debug, Clone, Args, Default)]
pub struct SensorArgs {
    /// Read sysfs from this directory instead of /sys (a captured tree).
    #[arg(long, value_name = "DIR")]
    pub sysfs_root: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorMode {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Args, Default)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub sensors: SensorArgs,
    /// Colour output (NO_COLOR is honoured in auto).
    #[arg(long, value_enum, value_name = "WHEN")]
    pub color: Option<ColorMode>,
    /// Theme name: dark, light, high-contrast, mono, or a file in ~/.config/llmtop/themes.
    #[arg(long, value_name = "NAME")]
    pub theme: Option<String>,
    /// Run with a scripted model and scripted sensors (no model file needed).
    #[arg(long)]
    pub demo: bool,
    /// Also serve Prometheus metrics on this address, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Watch other hosts instead of running a model: their /metrics (`llmtop serve` there),
    /// e.g. --remote http://gpu-box:9464 http://mini:9464. No chat in this mode.
    #[arg(long, num_args = 1.., value_name = "URL", conflicts_with_all = ["demo", "metrics_addr", "attach"])]
    pub remote: Vec<String>,
    #[command(flatten)]
    pub attach: AttachArgs,
    /// Run the request proxy inside the dashboard (see `llmtop proxy --help`) and show its
    /// requests, newest first, instead of the chat.
    #[arg(long, conflicts_with_all = ["attach", "demo"])]
    pub proxy: bool,
    /// With --proxy: where clients connect.
    #[arg(long, value_name = "ADDR", requires = "proxy", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// With --proxy: the server requests go to.
    #[arg(long, value_name = "URL", requires = "proxy", default_value = DEFAULT_UPSTREAM)]
    pub upstream: String,
}

/// Chat through a server that is already running instead of loading a model here.
#[derive(Debug, Clone, Args, Default)]
pub struct AttachArgs {
    /// Chat through a running server instead of loading a GGUF here: Ollama
    /// (http://127.0.0.1:11434), llama-server (:8080), LM Studio (:1234) or any
    /// OpenAI-compatible endpoint. The kind is detected; --model picks the model by name.
    /// Default: [backend] attach in the config.
    #[arg(long, value_name = "URL", conflicts_with = "demo")]
    pub attach: Option<String>,
    /// With --attach: the server's kind, when detection guesses wrong: ollama, llama-server,
    /// lmstudio or openai.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
}

/// Where `llmtop proxy` listens by default: Ollama's port plus one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:11435";
/// Where it forwards by default: Ollama.
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:11434";

#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub sensors: SensorArgs,
    /// Address clients connect to (HOST:PORT).
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: String,
    /// The server requests go to: http://HOST:PORT, optionally with a path prefix.
    #[arg(long, default_value = DEFAULT_UPSTREAM, value_name = "URL")]
    pub upstream: String,
    /// Also serve Prometheus metrics (per-model requests, tokens, joules, cost) here, e.g.
    /// 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// The old name of --metrics-addr, kept so scripts go on working.
    #[arg(
        long = "metrics",
        value_name = "ADDR",
        hide = true,
        conflicts_with = "metrics_addr"
    )]
    pub metrics_old_name: Option<String>,
    /// Request records file (default: requests.jsonl in the data dir).
    #[arg(long, value_name = "FILE", conflicts_with = "no_log")]
    pub log: Option<PathBuf>,
    /// Write no request records.
    #[arg(long)]
    pub no_log: bool,
    /// Rotate the records file past this many MiB, keeping 5 old ones.
    #[arg(long, default_value_t = 16, value_name = "MIB", value_parser = count)]
    pub log_max_mib: u32,
    /// Also print each record as a JSON line on stdout.
    #[arg(long)]
    pub print: bool,
    /// Stop after this many requests were recorded (for scripts and benchmarks).
    #[arg(long, hide = true, value_name = "N", value_parser = count)]
    pub exit_after: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub sensors: SensorArgs,
    /// Prompt to run (default: a 1000-word story, as in the video llmtop grew from).
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// Measured repetitions after one warm-up.
    #[arg(long, default_value_t = 3, value_name = "N", allow_negative_numbers = true, value_parser = count)]
    pub reps: u32,
    /// Skip the warm-up run.
    #[arg(long)]
    pub no_warmup: bool,
    /// Write the full result (model, hardware, every run) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Skip measuring the idle baseline before the runs.
    #[arg(long)]
    pub no_idle: bool,
    /// Also write a run card snapshot (JSON, Markdown, SVG chart) to the snapshots dir.
    #[arg(long, conflicts_with = "sweep")]
    pub snapshot: bool,
    /// Run the bench at every combination of settings: KEY=V1,V2,... with KEY threads,
    /// gpu-layers, ctx or model (GGUF paths). Repeatable: --sweep threads=1,2 --sweep ctx=512,2048.
    /// One table, one row per setting; --json writes the llmtop.sweep/1 schema. power-cap=W,...
    /// (alone) sets the power limit (root), measures prefill and decode at each cap and
    /// recommends one; the limits as found are restored however the bench ends.
    #[arg(long, value_name = "KEY=V1,V2")]
    pub sweep: Vec<String>,
    /// With --sweep: draw tok/s against J/token, the Pareto frontier marked, into this SVG file.
    #[arg(long, value_name = "FILE", requires = "sweep")]
    pub svg: Option<PathBuf>,
    /// Report the figures even when other programs took the CPUs llama.cpp needed during a
    /// run (the JSON then says which runs and how much); without it such a bench is refused.
    #[arg(long)]
    pub allow_contention: bool,
    /// With --sweep power-cap: what the caps apply to. auto: each NVIDIA board when the model
    /// runs on the GPU, else each CPU package (RAPL).
    #[arg(long, value_enum, value_name = "DEVICE")]
    pub cap_device: Option<CapDevice>,
    /// With --sweep power-cap: seconds idle at each new cap before its runs, so every cap
    /// starts from the same temperature [default: 10].
    #[arg(long, value_name = "S", allow_negative_numbers = true, value_parser = number)]
    pub cap_cooldown: Option<f64>,
    /// With --sweep power-cap: seconds of unmeasured runs per phase at each cap, to reach a
    /// steady state [default: 5].
    #[arg(long, value_name = "S", allow_negative_numbers = true, value_parser = number)]
    pub cap_settle: Option<f64>,
    /// With --sweep power-cap: seconds each phase is measured at each cap (and at least
    /// --reps runs) [default: 10].
    #[arg(long, value_name = "S", allow_negative_numbers = true, value_parser = number)]
    pub cap_window: Option<f64>,
    /// With --sweep power-cap: the knee's tolerance, the percent of the highest cap's speed a
    /// phase may lose [default: 5].
    #[arg(long, value_name = "PCT", allow_negative_numbers = true, value_parser = number)]
    pub cap_tolerance: Option<f64>,
}

/// What `bench --sweep power-cap` caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum CapDevice {
    /// Each NVIDIA board when the model runs on the GPU, else each CPU package.
    #[default]
    Auto,
    /// Each NVIDIA board (NVML).
    Gpu,
    /// Each CPU package (RAPL powercap).
    Cpu,
}

#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
    /// List the models a running server offers (Ollama, llama-server, LM Studio, any
    /// OpenAI-compatible endpoint), and what it has loaded where, instead of GGUF files here.
    #[arg(long, value_name = "URL")]
    pub attach: Option<String>,
    /// With --attach: the server's kind (ollama, llama-server, lmstudio, openai); default:
    /// detected.
    #[arg(long, value_name = "KIND", requires = "attach")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SensorsArgs {
    #[command(flatten)]
    pub sensors: SensorArgs,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
    /// Refresh full-screen until q, Ctrl-C or Esc (a signal or a closed terminal also ends it).
    #[arg(long)]
    pub watch: bool,
    /// Benchmark: run the sampler for N seconds and print its CPU time (see BENCHMARKS.md).
    #[arg(long, hide = true, value_name = "N", allow_negative_numbers = true, value_parser = number)]
    pub bench_seconds: Option<f64>,
    /// Sampling rate for --watch and --bench-seconds, Hz (default: config rate_hz).
    #[arg(long, hide = true, value_name = "HZ", allow_negative_numbers = true, value_parser = number)]
    pub rate_hz: Option<f64>,
}

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub sensors: SensorArgs,
    /// Print the verdicts as JSON (schema llmtop.doctor/1).
    #[arg(long)]
    pub json: bool,
    /// Seconds of readings, 1 to 7 (default 5).
    #[arg(long, value_name = "S", allow_negative_numbers = true, value_parser = number)]
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Run card JSON files (from Ctrl-S in the dashboard or `bench --snapshot`), or URLs of
    /// `llmtop serve` on other machines: http://HOST:9464 (its latest card),
    /// http://HOST:9464/runcards/ (all of them) or a card's own URL.
    #[arg(required = true, value_name = "FILE|URL")]
    pub files: Vec<PathBuf>,
    /// Purchase price of a machine, for total cost of ownership: HOST=AMOUNT, optionally with a
    /// currency (mini=1299EUR); without one, the first region's currency. Repeatable.
    #[arg(long, value_name = "HOST=AMOUNT")]
    pub hardware_price: Vec<String>,
    /// Hours of use per day, for total cost of ownership.
    #[arg(long, default_value_t = 8.0, value_name = "H", allow_negative_numbers = true, value_parser = number)]
    pub hours_per_day: f64,
    /// Years of use, for total cost of ownership.
    #[arg(long, default_value_t = 3.0, value_name = "Y", allow_negative_numbers = true, value_parser = number)]
    pub years: f64,
    /// Regions to price in (default: config compare_regions).
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub regions: Vec<String>,
    #[arg(long, conflicts_with_all = ["csv", "json"])]
    pub markdown: bool,
    #[arg(long, conflicts_with_all = ["markdown", "json"])]
    pub csv: bool,
    #[arg(long, conflicts_with_all = ["markdown", "csv"])]
    pub json: bool,
    /// Also draw the comparison as charts (one panel per figure) into this SVG file; the
    /// Markdown output links it.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub sensors: SensorArgs,
    /// Address to serve /metrics on.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
    pub metrics_addr: String,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  llmtop watch --server http://127.0.0.1:8080\n  \
llmtop watch --server http://127.0.0.1:8080 --interval 10 --duration 600 --json > watch.jsonl"
)]
pub struct WatchArgs {
    /// The llama-server to watch, e.g. http://127.0.0.1:8080 (started with --metrics).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// Seconds between reads of its counters (one line each).
    #[arg(long, default_value_t = 5.0, value_name = "S", allow_negative_numbers = true, value_parser = number)]
    pub interval: f64,
    /// Stop after this many seconds and print the totals (default: until Ctrl-C).
    #[arg(long, value_name = "S", allow_negative_numbers = true, value_parser = number)]
    pub duration: Option<f64>,
    /// One JSON object per line: each interval, then the totals (`"total": true`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sensors: SensorArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ShareArgs {
    /// The server's URL, e.g. http://127.0.0.1:8080 (it must run on this machine).
    #[arg(value_name = "URL")]
    pub url: String,
    /// Seconds to sample before printing.
    #[arg(long, default_value_t = 5.0, value_name = "S", allow_negative_numbers = true, value_parser = number)]
    pub seconds: f64,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sensors: SensorArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TallyWriterArgs {
    /// Tally file to write.
    #[arg(long, value_name = "FILE")]
    pub path: PathBuf,
    /// Rounds to write; 0 = until killed.
    #[arg(long, default_value_t = 0)]
    pub count: u64,
}

// Value parsers for numeric flags. Negative numbers reach them (`allow_negative_numbers`), so
// `--threads -5` is answered as a bad number, not as an unknown flag `-5`; `main` prints the
// message as "--threads -5: <message>". A zero passes where the command's own check explains
// better why it is wrong ("--threads 0: ... leave it out to use all physical cores").

/// A count: a whole number, meant to be 1 or more (0 is left to the command's own check).
pub fn count(s: &str) -> Result<u32, String> {
    parse_whole(s, "must be a whole number of 1 or more")
}

/// A whole number of 0 or more.
pub fn whole(s: &str) -> Result<u32, String> {
    parse_whole(s, "must be a whole number of 0 or more")
}

fn parse_whole(s: &str, why: &str) -> Result<u32, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n < 0 => Err(why.into()),
        Ok(n) => u32::try_from(n).map_err(|_| format!("is too large (at most {})", u32::MAX)),
        Err(_) => Err(why.into()),
    }
}

/// A whole number, negative allowed.
pub fn integer(s: &str) -> Result<i32, String> {
    s.trim()
        .parse::<i32>()
        .map_err(|_| "must be a whole number, e.g. 40".to_string())
}

/// A finite number (`nan` and `inf` parse as floats but mean nothing here); ranges are
/// checked where the value is used.
pub fn number(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err("must be a number, e.g. 0.5".into()),
    }
}

/// [`number`] as f32.
pub fn number_f32(s: &str) -> Result<f32, String> {
    let v = number(s)?;
    let f = v as f32;
    if f.is_finite() {
        Ok(f)
    } else {
        Err("must be a number, e.g. 0.5".into())
    }
}

impl SensorArgs {
    /// The config's sensors section with `--sysfs-root` applied (checked to be a directory).
    pub fn apply(
        &self,
        section: &crate::sensors::settings::SensorsSection,
    ) -> Result<crate::sensors::settings::SensorsSection, String> {
        let mut s = section.clone();
        if let Some(root) = &self.sysfs_root {
            if !root.is_dir() {
                return Err(format!(
                    "--sysfs-root {}: not a directory (give a captured sysfs tree, e.g. tests/fixtures/sysfs/laptop)",
                    root.display()
                ));
            }
            s.sysfs_root = root.clone();
        }
        Ok(s)
    }
}
