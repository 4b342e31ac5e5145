#!/usr/bin/env bash
# Generate a large synthetic sysfs tree for the discovery benchmark (BENCHMARKS.md, Sensors):
#   scripts/gen-sysfs-tree.sh DIR [DEVICES] [TEMPS] [FANS]
# DEVICES hwmon dirs, each with TEMPS temperatures (input, label, crit, max), FANS fans
# (input, min) and one power1_average, plus 4 RAPL zones. Real file names and units.
set -euo pipefail
dir=${1:?usage: gen-sysfs-tree.sh DIR [DEVICES] [TEMPS] [FANS]}
devices=${2:-40}
temps=${3:-12}
fans=${4:-6}
mkdir -p "$dir/class/hwmon" "$dir/class/powercap"
for d in $(seq 0 $((devices - 1))); do
  h="$dir/class/hwmon/hwmon$d"
  mkdir -p "$h"
  echo "nct6798" > "$h/name"
  for t in $(seq 1 "$temps"); do
    echo $((30000 + t * 500)) > "$h/temp${t}_input"
    echo "Sensor $t" > "$h/temp${t}_label"
    echo 100000 > "$h/temp${t}_crit"
    echo 80000 > "$h/temp${t}_max"
  done
  for f in $(seq 1 "$fans"); do
    echo $((800 + f * 100)) > "$h/fan${f}_input"
    echo 0 > "$h/fan${f}_min"
  done
  echo 25000000 > "$h/power1_average"
done
for z in 0 0:0 0:1 0:2; do
  p="$dir/class/powercap/intel-rapl:$z"
  mkdir -p "$p"
  case $z in 0) n=package-0 ;; 0:0) n=core ;; 0:1) n=uncore ;; 0:2) n=dram ;; esac
  echo "$n" > "$p/name"
  echo 123456789 > "$p/energy_uj"
  echo 262143328850 > "$p/max_energy_range_uj"
done
echo "$(find "$dir" -type f | wc -l) files, $(find "$dir/class/hwmon" -type f | wc -l) of them hwmon"
