//! CPU time and memory of processes, read from Linux's `/proc` (nothing elsewhere): the
//! standard `process_*` metrics of `/metrics`, and what the load tool reads of the
//! services it measures.

use std::fmt::Write as _;

/// Linux's `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat`, 100 on every
/// architecture Linux runs on today.
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` tells of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time spent, in seconds.
    pub cpu_seconds: f64,
    /// CPU time of its children that have exited and been waited for, in seconds.
    pub reaped_children_cpu_seconds: f64,
    /// Its parent's pid.
    pub parent: u32,
    /// Threads.
    pub threads: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
}

/// The stats of process `pid`, if it runs (and this is Linux).
pub fn of(pid: u32) -> Option<ProcessStats> {
    read(&pid.to_string())
}

/// The stats of this process.
pub fn own() -> Option<ProcessStats> {
    read("self")
}

/// This process's soft limit of open files (`ulimit -n`, `LimitNOFILE=`), from
/// `/proc/self/limits`; `None` where that cannot be read or there is no limit.
pub fn open_files_limit() -> Option<u64> {
    parse_open_files_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The soft limit of the "Max open files" line of a `/proc/<pid>/limits` text.
fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn read(pid: &str) -> Option<ProcessStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after
    // the last ')'. Field n of proc(5) is then at index n - 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let number = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let resident_kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    Some(ProcessStats {
        cpu_seconds: (number(14)? + number(15)?) as f64 / TICKS_PER_SECOND,
        reaped_children_cpu_seconds: (number(16)? + number(17)?) as f64 / TICKS_PER_SECOND,
        parent: u32::try_from(number(4)?).ok()?,
        threads: number(20)?,
        virtual_bytes: number(23)?,
        resident_bytes: resident_kb * 1024,
    })
}

/// CPU seconds spent by process `pid` and every process under it, running or reaped:
/// a server that forks a process per connection (PostgreSQL) is counted whole.
pub fn tree_cpu_seconds(pid: u32) -> Option<f64> {
    let root = of(pid)?;
    let mut parents: Vec<(u32, ProcessStats)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            if let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok())
                && let Some(stats) = of(child)
            {
                parents.push((child, stats));
            }
        }
    }
    let mut total = root.cpu_seconds + root.reaped_children_cpu_seconds;
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (child, stats) in &parents {
            if stats.parent == parent && *child != pid {
                total += stats.cpu_seconds + stats.reaped_children_cpu_seconds;
                frontier.push(*child);
            }
        }
    }
    Some(total)
}

/// Appends this process's `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_threads` and `process_open_fds` (the names
/// Prometheus client libraries use) to `out`; nothing where `/proc` is missing.
pub fn render(out: &mut String) {
    let Some(stats) = own() else {
        return;
    };
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |entries| entries.count());
    let _ = writeln!(
        out,
        "# HELP process_cpu_seconds_total User and system CPU time spent, in seconds.\n\
         # TYPE process_cpu_seconds_total counter\n\
         process_cpu_seconds_total {}\n\
         # HELP process_resident_memory_bytes Resident memory, in bytes.\n\
         # TYPE process_resident_memory_bytes gauge\n\
         process_resident_memory_bytes {}\n\
         # HELP process_virtual_memory_bytes Virtual memory, in bytes.\n\
         # TYPE process_virtual_memory_bytes gauge\n\
         process_virtual_memory_bytes {}\n\
         # HELP process_threads Threads of the process.\n\
         # TYPE process_threads gauge\n\
         process_threads {}\n\
         # HELP process_open_fds Open file descriptors.\n\
         # TYPE process_open_fds gauge\n\
         process_open_fds {open_fds}",
        stats.cpu_seconds, stats.resident_bytes, stats.virtual_bytes, stats.threads
    );
}

/// The value of the sample `name` (without labels) in the Prometheus text `metrics`.
///
/// ```
/// let text = "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n";
/// assert_eq!(process_stats::sample(text, "process_cpu_seconds_total"), Some(1.5));
/// ```
pub fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (metric, value) = line.split_once(' ')?;
        (metric == name).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_itself_and_its_tree() {
        let Some(stats) = own() else {
            return; // not Linux: nothing to read, nothing rendered
        };
        assert!(stats.threads >= 1 && stats.resident_bytes > 0, "{stats:?}");
        let pid = std::process::id();
        let mut spin = 0u64;
        for i in 0..20_000_000u64 {
            spin = spin.wrapping_add(i ^ (spin >> 3));
        }
        assert_ne!(spin, 1);
        let alone = of(pid).expect("ourselves").cpu_seconds;
        let tree = tree_cpu_seconds(pid).expect("our own tree");
        assert!(alone > 0.0 && tree >= alone, "{alone} then {tree}");
        let mut text = String::new();
        render(&mut text);
        let cpu = sample(&text, "process_cpu_seconds_total").expect("rendered");
        assert!(cpu > 0.0, "{text}");
        assert!(
            sample(&text, "process_open_fds").is_some_and(|fds| fds >= 3.0),
            "{text}"
        );
    }

    #[test]
    fn the_open_files_limit_is_the_soft_one() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95432                95432                processes \n\
                      Max open files            256                  524288               files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(256));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), None);
    }
}
