// Reading the service's Prometheus text (GET /metrics).

// Sums the samples of `name` whose labels contain every one of `labels`; null if none.
export function metric(text, name, labels = []) {
  let sum = null;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    if (!labels.every((label) => line.includes(label))) continue;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(value)) sum = (sum ?? 0) + value;
  }
  return sum;
}

// The cumulative buckets of histogram `name`: [[upper bound, count]], smallest first.
export function buckets(text, name) {
  const found = [];
  for (const line of text.split("\n")) {
    const match = line.match(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`));
    if (match) found.push([match[1] === "+Inf" ? Infinity : Number(match[1]), Number(match[2])]);
  }
  return found.sort((a, b) => a[0] - b[0]);
}

// The 99th percentile of what a histogram observed between two reads of its buckets,
// as the upper bound of the bucket it falls in (seconds; Infinity past the largest
// bound); null if nothing was observed.
export function p99(now, before) {
  if (!before || now.length !== before.length) return null;
  const total = now.at(-1)[1] - before.at(-1)[1];
  if (!(total > 0)) return null;
  for (let i = 0; i < now.length; i++) {
    if (now[i][1] - before[i][1] >= 0.99 * total) return now[i][0];
  }
  return null;
}

// The apply answers that are 5xx, as the alerting rules count them.
export const FAILED_APPLY = ["unavailable", "not_ready", "internal", "superseded", "timeout"];

// Every apply answer, and the 5xx ones.
export function applyAnswers(text) {
  const all = metric(text, "firstcome_requests_total", ['route="apply"']) ?? 0;
  let failed = 0;
  for (const outcome of FAILED_APPLY) {
    failed += metric(text, "firstcome_requests_total", ['route="apply"', `outcome="${outcome}"`]) ?? 0;
  }
  return { all, failed };
}
