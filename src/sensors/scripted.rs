//! A scripted sensor: deterministic readings as a function of `now`, for `--demo` and UI tests.
//! It stands in for real hardware with the same provenance a real machine would report
//! (an NVML GPU, a RAPL CPU package, hwmon temperatures and fans, and a CPU estimate).

use super::{Covers, Method, Quantity, Reading, Sensor, Source};

/// Readings that rise while the scripted model is "busy" and settle when idle.
#[derive(Debug, Clone, Default)]
pub struct ScriptedSensor {
    /// Also report a smart plug at the wall (then the total is the wall figure).
    pub with_wall: bool,
    /// Report the CPU as an estimate (utilisation x TDP) instead of RAPL.
    pub cpu_estimated: bool,
}

fn reading(
    id: &str,
    device: &str,
    label: &str,
    quantity: Quantity,
    value: f64,
    limit: Option<f64>,
    (source, covers, method): (Source, Covers, Method),
) -> Reading {
    Reading {
        id: id.into(),
        device: device.into(),
        label: label.into(),
        quantity,
        value: Some(value),
        limit,
        source,
        covers,
        method,
        rejected: None,
        via: None,
    }
}

/// A smooth, deterministic load curve in 0..=1 with a period of 20 s.
pub fn load_at(now: f64) -> f64 {
    0.5 + 0.5 * (now * std::f64::consts::TAU / 20.0).sin()
}

impl Sensor for ScriptedSensor {
    fn name(&self) -> String {
        "scripted".into()
    }

    fn read(&mut self, now: f64) -> Vec<Reading> {
        let load = load_at(now);
        let gpu = (Source::Nvml, Covers::GpuBoard, Method::Measured);
        let cpu_power = if self.cpu_estimated {
            (Source::Estimate, Covers::CpuPackage, Method::Estimated)
        } else {
            (Source::Rapl, Covers::CpuPackage, Method::Measured)
        };
        let hw_cpu = (Source::Hwmon, Covers::CpuPackage, Method::Measured);
        let hw_other = (Source::Hwmon, Covers::Other, Method::Measured);
        let gpu_w = 20.0 + 160.0 * load;
        let cpu_w = 12.0 + 30.0 * load;
        let mut out = vec![
            // Read as a current board is: NVML's instant power field.
            Reading {
                via: Some(super::nvml::VIA_INSTANT.into()),
                ..reading(
                    "nvml:0:power",
                    "Demo GPU",
                    "GPU",
                    Quantity::Power,
                    gpu_w,
                    Some(220.0),
                    gpu,
                )
            },
            reading(
                "nvml:0:temp",
                "Demo GPU",
                "GPU",
                Quantity::Temperature,
                40.0 + 30.0 * load,
                Some(90.0),
                gpu,
            ),
            reading(
                "nvml:0:util",
                "Demo GPU",
                "GPU",
                Quantity::Utilization,
                95.0 * load,
                None,
                gpu,
            ),
            reading(
                "nvml:0:vram_used",
                "Demo GPU",
                "VRAM",
                Quantity::MemoryUsed,
                1.2e9 + 0.3e9 * load,
                None,
                gpu,
            ),
            reading(
                "nvml:0:vram_total",
                "Demo GPU",
                "VRAM",
                Quantity::MemoryTotal,
                8.0e9,
                None,
                gpu,
            ),
            reading(
                "cpu:package-0:power",
                "Demo CPU",
                "package-0",
                Quantity::Power,
                cpu_w,
                None,
                cpu_power,
            ),
            reading(
                "hwmon:coretemp:temp1",
                "coretemp",
                "Package id 0",
                Quantity::Temperature,
                45.0 + 35.0 * load,
                Some(100.0),
                hw_cpu,
            ),
            reading(
                "hwmon:coretemp:temp2",
                "coretemp",
                "Core 0",
                Quantity::Temperature,
                43.0 + 33.0 * load,
                Some(100.0),
                hw_cpu,
            ),
            reading(
                "hwmon:nct6775:fan1",
                "nct6775",
                "fan1",
                Quantity::FanRpm,
                (800.0 + 1200.0 * load).round(),
                None,
                hw_other,
            ),
            reading(
                "hwmon:nct6775:fan2",
                "nct6775",
                "fan2",
                Quantity::FanRpm,
                (600.0 + 900.0 * load).round(),
                None,
                hw_other,
            ),
            reading(
                "system:cpu:util",
                "Demo CPU",
                "CPU",
                Quantity::Utilization,
                10.0 + 80.0 * load,
                None,
                (Source::System, Covers::CpuPackage, Method::Measured),
            ),
        ];
        if self.with_wall {
            out.push(reading(
                "plug:shelly-gen2:power",
                "shelly-gen2",
                "wall",
                Quantity::Power,
                (gpu_w + cpu_w) * 1.15 + 25.0,
                None,
                (Source::Plug, Covers::Wall, Method::Measured),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_follow_the_load_curve() {
        let mut s = ScriptedSensor::default();
        // t = 5 s is the peak of the 20 s sine: load 1.0.
        let r = s.read(5.0);
        let get = |id: &str| {
            r.iter()
                .find(|x| x.id == id)
                .and_then(|x| x.value)
                .expect("present")
        };
        assert!((get("nvml:0:power") - 180.0).abs() < 1e-9);
        assert!((get("cpu:package-0:power") - 42.0).abs() < 1e-9);
        assert_eq!(get("hwmon:nct6775:fan1"), 2000.0);
        // t = 15 s is the trough: load 0.
        let r = s.read(15.0);
        let gpu = r.iter().find(|x| x.id == "nvml:0:power").expect("gpu");
        assert!((gpu.value.expect("v") - 20.0).abs() < 1e-9);
        assert_eq!(gpu.method, Method::Measured);
        assert!(!r.iter().any(|x| x.covers == Covers::Wall));
    }

    #[test]
    fn estimate_and_wall_are_marked() {
        let mut s = ScriptedSensor {
            with_wall: true,
            cpu_estimated: true,
        };
        let r = s.read(0.0);
        let cpu = r
            .iter()
            .find(|x| x.id == "cpu:package-0:power")
            .expect("cpu");
        assert_eq!(
            (cpu.source, cpu.method),
            (Source::Estimate, Method::Estimated)
        );
        let wall = r.iter().find(|x| x.covers == Covers::Wall).expect("wall");
        // load(0) = 0.5: gpu 100 W, cpu 27 W -> 127 * 1.15 + 25 = 171.05 W.
        assert!((wall.value.expect("v") - 171.05).abs() < 1e-9);
    }
}
