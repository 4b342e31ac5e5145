//! Sensors: readers on sysfs-format fixture trees, the sampler thread, smart plugs on 127.0.0.1,
//! NVML where a GPU is, and `llmtop sensors` through the binary.
//!
//! One test binary per layer: each links llama.cpp once.

#[path = "../live/mod.rs"]
mod live;

mod plugs;
#[path = "../common/proc_files.rs"]
mod proc_files;
mod process_owner;
mod sensors_cli;
mod sensors_gpu_hwmon;
mod sensors_nvml;
mod sensors_sampler;
mod sensors_sysfs;
#[path = "../common/skip.rs"]
mod skip;
