//! NVIDIA boards' power limit through NVML: read the management limit and its constraints,
//! set it with `nvmlDeviceSetPowerManagementLimit` (root only), read back the enforced one.

use super::{CapError, NVML_FIX, Original, watts_text};
use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

/// One board.
pub struct Board {
    nvml: &'static Nvml,
    pub index: u32,
    pub min_w: f64,
    pub max_w: f64,
    pub original: Original,
}

fn label(index: u32, name: &str) -> String {
    format!("GPU {index} ({})", crate::util::sanitize::terminal(name))
}

fn failed(device: String, what: &'static str, e: &NvmlError) -> CapError {
    match e {
        NvmlError::NoPermission => CapError::NoPermission {
            device,
            fix: NVML_FIX.into(),
        },
        NvmlError::NotSupported => CapError::Unsupported {
            device,
            why: "NVML: not supported on this board".into(),
        },
        other => CapError::Failed {
            device,
            what,
            why: format!("NVML: {other}"),
        },
    }
}

/// Every board NVML lists, with its limit as found and the range it accepts.
pub fn boards(nvml: &'static Nvml) -> Result<Vec<Board>, CapError> {
    let count = nvml.device_count().map_err(|e| CapError::NoDevice {
        what: "NVIDIA board",
        why: format!("NVML: {e}"),
    })?;
    if count == 0 {
        return Err(CapError::NoDevice {
            what: "NVIDIA board",
            why: "NVML lists none".into(),
        });
    }
    (0..count)
        .map(|index| {
            let d = nvml
                .device_by_index(index)
                .map_err(|e| failed(format!("GPU {index}"), "cannot open it", &e))?;
            let name = d.name().unwrap_or_else(|_| format!("GPU {index}"));
            let limit_mw = d
                .power_management_limit()
                .map_err(|e| failed(label(index, &name), "cannot read its power limit", &e))?;
            let c = d.power_management_limit_constraints().map_err(|e| {
                failed(label(index, &name), "cannot read the limits it accepts", &e)
            })?;
            Ok(Board {
                nvml,
                index,
                min_w: f64::from(c.min_limit) / 1e3,
                max_w: f64::from(c.max_limit) / 1e3,
                original: Original::Nvml {
                    index,
                    name,
                    limit_mw,
                },
            })
        })
        .collect()
}

fn set_mw(nvml: &Nvml, index: u32, device: &str, mw: u32) -> Result<(), CapError> {
    let mut d = nvml
        .device_by_index(index)
        .map_err(|e| failed(device.into(), "cannot open it", &e))?;
    d.set_power_management_limit(mw).map_err(|e| match e {
        NvmlError::InvalidArg => CapError::Failed {
            device: device.into(),
            what: "refused the limit",
            why: format!(
                "NVML: {} is not a valid limit for it",
                watts_text(f64::from(mw) / 1e3)
            ),
        },
        other => failed(device.into(), "cannot set its power limit", &other),
    })
}

impl Board {
    pub fn set(&mut self, watts: f64) -> Result<(), CapError> {
        let mw = (watts * 1e3).round() as u32;
        set_mw(self.nvml, self.index, &self.original.label(), mw)
    }

    pub fn in_effect_w(&self) -> Result<f64, CapError> {
        let device = self.original.label();
        let d = self
            .nvml
            .device_by_index(self.index)
            .map_err(|e| failed(device.clone(), "cannot open it", &e))?;
        d.enforced_power_limit()
            .or_else(|_| d.power_management_limit())
            .map(|mw| f64::from(mw) / 1e3)
            .map_err(|e| failed(device, "cannot read its power limit", &e))
    }

    pub fn restore(&mut self) -> Result<(), CapError> {
        let Original::Nvml { limit_mw, .. } = self.original else {
            return Ok(());
        };
        set_mw(self.nvml, self.index, &self.original.label(), limit_mw)
    }
}

/// Put back a board's limit recorded by another process, after checking the board at that
/// index is the one recorded.
pub fn restore_from(nvml: &Nvml, index: u32, name: &str, limit_mw: u32) -> Result<(), CapError> {
    let device = label(index, name);
    let d = nvml
        .device_by_index(index)
        .map_err(|e| failed(device.clone(), "cannot open it", &e))?;
    let now = d.name().unwrap_or_default();
    if now != name {
        return Err(CapError::Failed {
            device,
            what: "not restored",
            why: format!(
                "the board at that index is now {:?}; set its limit by hand (sudo nvidia-smi -i {index} -pl {})",
                crate::util::sanitize::terminal(&now),
                (f64::from(limit_mw) / 1e3).round()
            ),
        });
    }
    set_mw(nvml, index, &device, limit_mw)
}
