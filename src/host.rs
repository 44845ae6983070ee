//! Facts about the machine a run is on, read once from /proc: for the manifest, and for sizing
//! memory use.

use serde::Serialize;

/// The machine a run ran on.
#[derive(Clone, Debug, Serialize)]
pub struct Host {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
}

impl Host {
    pub fn here() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map_or("unknown", str::trim).to_string();
        let total = meminfo("MemTotal").unwrap_or(0) as f64;
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (total / f64::from(1u32 << 30) * 10.0).round() / 10.0,
            os: format!("{} {}", std::env::consts::OS, read("/proc/sys/kernel/osrelease").trim()),
        }
    }
}

/// A `/proc/meminfo` field (`MemTotal`, `MemAvailable`, …) in bytes.
pub fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.strip_prefix(key).is_some_and(|rest| rest.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib << 10)
}

/// This machine's name (`/proc/sys/kernel/hostname`), empty when unknown.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_is_read_in_bytes() {
        let total = super::meminfo("MemTotal").unwrap();
        let available = super::meminfo("MemAvailable").unwrap();
        assert!(total > 1 << 28 && available <= total, "{total} {available}");
        assert_eq!(super::meminfo("NoSuchField"), None);
    }
}
