//! A run as one self-contained HTML page (inline SVG, no script, nothing fetched): the
//! latency histogram per outcome, throughput and p99 over time, CPU per process.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// What the page shows.
pub struct RunPage<'a> {
    /// A title line (what ran, where).
    pub title: String,
    /// Latencies per outcome.
    pub latencies: &'a BTreeMap<String, Vec<Duration>>,
    /// (finished at, since the start; latency) of every request.
    pub timeline: &'a [(Duration, Duration)],
    /// CPU seconds per process during the run.
    pub cpu_seconds: &'a BTreeMap<String, f64>,
    /// Applies admitted (accepted or pending), to divide the CPU by.
    pub admitted: u64,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const MARGIN: f64 = 48.0;
const COLOURS: [&str; 6] = [
    "#1b7837", "#c51b7d", "#2166ac", "#e08214", "#542788", "#666666",
];

/// The page.
pub fn html(page: &RunPage<'_>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>load run</title>\
         <style>body{{font-family:sans-serif;max-width:760px;margin:1em auto}}\
         svg{{width:100%;height:auto;background:#fafafa}}text{{font-size:11px}}</style>\
         </head><body><h1>Load run</h1><p>{}</p>",
        escape(&page.title)
    );
    out.push_str("<h2>Latency per outcome</h2>");
    out.push_str(&latency_histogram(page.latencies));
    out.push_str("<h2>Throughput and p99 over time (250 ms windows)</h2>");
    out.push_str(&over_time(page.timeline));
    out.push_str("<h2>CPU per process</h2>");
    out.push_str(&cpu_bars(page.cpu_seconds, page.admitted));
    out.push_str("</body></html>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn svg_open(out: &mut String, height: f64) {
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {WIDTH} {height}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
}

/// Requests per latency bucket (log-spaced, 0.1 ms to 10 s), one line per outcome.
fn latency_histogram(latencies: &BTreeMap<String, Vec<Duration>>) -> String {
    const BUCKETS: usize = 30;
    let (low, high) = (1e-4_f64.log10(), 10f64.log10());
    let bucket = |latency: &Duration| {
        let position = (latency.as_secs_f64().max(1e-4).log10() - low) / (high - low);
        ((position * BUCKETS as f64) as usize).min(BUCKETS - 1)
    };
    let counts: Vec<(&String, Vec<u64>)> = latencies
        .iter()
        .map(|(outcome, values)| {
            let mut counts = vec![0u64; BUCKETS];
            for value in values {
                counts[bucket(value)] += 1;
            }
            (outcome, counts)
        })
        .collect();
    let most = counts
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut out = String::new();
    svg_open(&mut out, HEIGHT);
    let plot = WIDTH - 2.0 * MARGIN;
    let x = |i: usize| MARGIN + plot * i as f64 / (BUCKETS - 1) as f64;
    let y = |count: u64| HEIGHT - MARGIN + (MARGIN - HEIGHT + 20.0) * count as f64 / most;
    for (label, at) in [
        ("0.1 ms", 0.0),
        ("1 ms", 0.2),
        ("10 ms", 0.4),
        ("100 ms", 0.6),
        ("1 s", 0.8),
        ("10 s", 1.0),
    ] {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            MARGIN + plot * at,
            HEIGHT - MARGIN + 16.0
        );
    }
    let _ = write!(out, "<text x=\"4\" y=\"14\">requests (max {most})</text>");
    for (index, (outcome, counts)) in counts.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(i, count)| format!("{:.1},{:.1}", x(i), y(*count)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{} ({})</text>",
            points.join(" "),
            WIDTH - MARGIN - 150.0,
            20.0 + 14.0 * index as f64,
            escape(outcome),
            counts.iter().sum::<u64>()
        );
    }
    out.push_str("</svg>");
    out
}

/// Bars of requests finished per window, and a line of the window's p99 latency.
fn over_time(timeline: &[(Duration, Duration)]) -> String {
    const WINDOW: f64 = 0.25;
    let end = timeline
        .iter()
        .map(|(at, _)| at.as_secs_f64())
        .fold(0.0, f64::max);
    let windows = ((end / WINDOW).ceil() as usize).max(1);
    let mut per_window: Vec<Vec<f64>> = vec![Vec::new(); windows];
    for (at, latency) in timeline {
        let index = ((at.as_secs_f64() / WINDOW) as usize).min(windows - 1);
        per_window[index].push(latency.as_secs_f64() * 1e3);
    }
    let rates: Vec<f64> = per_window.iter().map(|w| w.len() as f64 / WINDOW).collect();
    let p99s: Vec<f64> = per_window
        .iter_mut()
        .map(|w| {
            w.sort_by(f64::total_cmp);
            w.get(((w.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0.0)
        })
        .collect();
    let top_rate = rates.iter().copied().fold(1.0, f64::max);
    let top_p99 = p99s.iter().copied().fold(1.0, f64::max);
    let mut out = String::new();
    svg_open(&mut out, HEIGHT);
    let plot = WIDTH - 2.0 * MARGIN;
    let bar = plot / windows as f64;
    let base = HEIGHT - MARGIN;
    let tall = HEIGHT - MARGIN - 20.0;
    for (i, rate) in rates.iter().enumerate() {
        let h = tall * rate / top_rate;
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#9ecae1\"/>",
            MARGIN + bar * i as f64,
            base - h,
            (bar - 1.0).max(0.5)
        );
    }
    let points: Vec<String> = p99s
        .iter()
        .enumerate()
        .map(|(i, p99)| {
            format!(
                "{:.1},{:.1}",
                MARGIN + bar * (i as f64 + 0.5),
                base - tall * p99 / top_p99
            )
        })
        .collect();
    let _ = write!(
        out,
        "<polyline fill=\"none\" stroke=\"#c51b7d\" stroke-width=\"2\" points=\"{}\"/>\
         <text x=\"4\" y=\"14\" fill=\"#2166ac\">requests/s (max {top_rate:.0})</text>\
         <text x=\"{:.1}\" y=\"14\" fill=\"#c51b7d\">p99 ms (max {top_p99:.1})</text>\
         <text x=\"{MARGIN}\" y=\"{:.1}\">0 s</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{end:.1} s</text></svg>",
        points.join(" "),
        WIDTH - MARGIN - 150.0,
        base + 16.0,
        WIDTH - MARGIN,
        base + 16.0
    );
    out
}

/// One bar per process: CPU seconds, and µs per admitted apply.
fn cpu_bars(cpu_seconds: &BTreeMap<String, f64>, admitted: u64) -> String {
    let row = 26.0;
    let height = 20.0 + row * cpu_seconds.len().max(1) as f64;
    let most = cpu_seconds.values().copied().fold(1e-9, f64::max);
    let mut out = String::new();
    svg_open(&mut out, height);
    if cpu_seconds.is_empty() {
        out.push_str("<text x=\"8\" y=\"20\">no CPU figures (not Linux, or no /metrics)</text>");
    }
    for (i, (name, seconds)) in cpu_seconds.iter().enumerate() {
        let y = 10.0 + row * i as f64;
        let w = (WIDTH - 360.0) * seconds / most;
        let per = if admitted > 0 {
            format!(
                "{:.0} µs per accepted apply",
                seconds * 1e6 / admitted as f64
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<text x=\"8\" y=\"{:.1}\">{}</text>\
             <rect x=\"110\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"18\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{seconds:.2} s, {per}</text>",
            y + 13.0,
            escape(name),
            COLOURS[i % COLOURS.len()],
            116.0 + w,
            y + 13.0
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_three_charts_and_no_outside_reference() {
        let latencies = BTreeMap::from([
            (
                "accepted".to_owned(),
                vec![Duration::from_millis(3), Duration::from_millis(40)],
            ),
            ("sold_out".to_owned(), vec![Duration::from_micros(800)]),
        ]);
        let timeline = [
            (Duration::from_millis(100), Duration::from_millis(3)),
            (Duration::from_millis(600), Duration::from_millis(40)),
        ];
        let cpu = BTreeMap::from([("service".to_owned(), 1.5), ("<redis>".to_owned(), 0.5)]);
        let page = html(&RunPage {
            title: "embedded".into(),
            latencies: &latencies,
            timeline: &timeline,
            cpu_seconds: &cpu,
            admitted: 2,
        });
        assert_eq!(page.matches("<svg").count(), 3, "{page}");
        assert!(
            page.contains("accepted (2)") && page.contains("sold_out (1)"),
            "{page}"
        );
        assert!(page.contains("750000 µs per accepted apply"), "{page}");
        assert!(page.contains("&lt;redis&gt;"), "names are escaped");
        assert!(
            !page.contains("src=") && !page.contains("href="),
            "self-contained"
        );
    }
}
