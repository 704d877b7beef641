// The console (GET /ui): signs in with the admin token, reads the API every second and
// shows what it says. A module of this service; nothing inline, nothing from elsewhere.
import { Refused, call, notReady, setToken, token } from "./api.js";
import * as campaigns from "./campaigns.js";
import { Series, chart, draw } from "./charts.js";
import * as create from "./create.js";
import * as deadLetters from "./dead_letters.js";
import { applyAnswers, buckets, metric, p99 } from "./metrics.js";

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat();
const REFRESH_MS = 1000;
// The dead letters are read every this many refreshes (and after every action).
const DEAD_LETTERS_EVERY = 5;

// The admin token comes from the address's fragment (never sent to the server) or the
// sign-in form, and is kept for this tab only.
function tokenFromFragment() {
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromFragment) {
    setToken(fromFragment);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return Boolean(fromFragment);
}
tokenFromFragment();
// A link with another token opened in this tab: sign in with it.
window.addEventListener("hashchange", () => {
  if (tokenFromFragment()) {
    $("login").hidden = true;
    refresh();
  }
});

const service = {
  series: { apply_rate: new Series(), p99_ms: new Series(), failed_share: new Series(), lag: new Series() },
  charts: null,
  previous: null, // { at, applies, failed, latency, handled, lag, issued }
  refreshes: 0,
  readDeadLetters: true,
  deadLetters: 0,
  stalledSince: null,
};

function chartsOnce() {
  if (service.charts) return;
  const parent = $("service-charts");
  const whole = (value) => number.format(Math.round(value));
  service.charts = {
    apply_rate: chart(parent, "apply_rate", "applies/s", whole),
    p99_ms: chart(parent, "p99_ms", "apply p99 ms (≤)", whole),
    failed_share: chart(parent, "failed_share", "5xx % of applies", (v) => v.toFixed(1)),
    lag: chart(parent, "lag", "worker queue lag", whole),
  };
}

function signIn(why) {
  clearTimeout(timer);
  // Reads still in flight are dropped when they land (signed in anew or not).
  generation += 1;
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("service-figures").hidden = true;
  $("login").hidden = false;
  $("login-why").textContent = why;
  $("campaigns").replaceChildren();
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken($("token").value);
  $("token").value = "";
  $("login").hidden = true;
  refresh();
});

$("sign-out").addEventListener("click", () => {
  setToken(null);
  signIn("Signed out.");
});

$("settle-all").addEventListener("click", async () => {
  const result = $("settle-all-result");
  result.textContent = "…";
  try {
    const report = await call("POST", "/admin/settle");
    const failed = report.failed_campaigns ? ` ${report.failed_campaigns} campaign(s) could not be settled now (see the log).` : "";
    result.textContent = `Settled ${report.campaigns} campaigns: ${report.unsettled} admissions without a coupon past the grace, ${report.republished} published again.${failed}`;
  } catch (error) {
    if (error instanceof Refused) return signIn(error.message);
    result.textContent = `Not done: ${error.message}`;
  }
  refresh();
});

create.wire((campaign) => {
  $("status").hidden = false;
  $("status").textContent = `Created #${campaign.id} ${campaign.name}.`;
  refresh();
});

const PORTS = { store: "the database", counter: "the counter", queue: "the queue", timeout: "a backend (too slow to answer)" };

// The reasons admissions or issuing are paused, in words.
function pauses(ready, metrics, rebuilding, lag, issued) {
  const reasons = [];
  if (ready.length) {
    const names = ready.map((port) => PORTS[port] ?? port).join(", ");
    reasons.push(["not-ready", `Not ready: ${names} does not answer. Applications answer 503 and nothing is admitted until it does; admitted applicants keep their coupons.`]);
  }
  if (rebuilding) {
    reasons.push(["rebuilding", `${rebuilding} campaign(s) paused while a counter is rebuilt after a loss (see the campaign).`]);
  }
  // Stalled: tickets wait, the queue does not shrink, and nothing moves: this process's
  // worker (if it has one) settles nothing and no campaign's issued count grows. Every
  // ticket settled counts, whatever became of it (on the embedded default only
  // refusals reach the worker); the issued counts are the store's, so workers of other
  // processes at work, or a rush that outruns them, raise no alarm.
  const handled = metric(metrics, "firstcome_worker_tickets_total");
  const before = service.previous;
  const moved = before && ((handled !== null && handled !== before.handled) || (issued !== null && before.issued !== null && issued !== before.issued));
  const stuck = lag > 0 && before && before.lag !== null && lag >= before.lag;
  service.stalledSince = stuck && !moved ? (service.stalledSince ?? new Date()) : null;
  if (service.stalledSince && Date.now() - service.stalledSince.getTime() >= 5000) {
    reasons.push(["worker", `Issuing is stalled: ${number.format(lag)} tickets wait, and none has left the queue since ${service.stalledSince.toLocaleTimeString()}.`]);
  }
  const unsettled = metric(metrics, "firstcome_admissions_unsettled") ?? 0;
  if (unsettled > 0) {
    const oldest = metric(metrics, "firstcome_oldest_unsettled_seconds") ?? 0;
    reasons.push(["unsettled", `${number.format(unsettled)} admissions older than the grace have no coupon yet (oldest ${Math.round(oldest)} s): the settler publishes them again.`]);
  }
  if (service.deadLetters > 0) {
    reasons.push(["dead-letters", `${service.deadLetters} dead letter(s) wait for a replay (below).`]);
  }
  return { reasons, handled };
}

function showService(at, metrics, ready, rebuilding, issued) {
  chartsOnce();
  if (!metrics) {
    // Not read this time: no point rather than a rate computed from nothing.
    showPauses(pauses(ready, metrics, rebuilding, 0, issued).reasons);
    return;
  }
  const { all, failed } = applyAnswers(metrics);
  const latency = buckets(metrics, "firstcome_apply_seconds");
  const lag = metric(metrics, "firstcome_queue_lag");
  const before = service.previous;
  const seconds = before ? (at - before.at) / 1000 : 0;
  const applies = before && seconds > 0 ? Math.max(0, (all - before.applies) / seconds) : null;
  const answered = before ? all - before.applies : 0;
  const values = {
    apply_rate: applies,
    p99_ms: before ? (p99(latency, before.latency) ?? null) : null,
    failed_share: before && answered > 0 ? (100 * (failed - before.failed)) / answered : before ? 0 : null,
    lag,
  };
  if (values.p99_ms !== null) values.p99_ms *= 1000;
  for (const [name, series] of Object.entries(service.series)) {
    series.push(values[name]);
    draw(service.charts[name], series);
  }
  const apply = $("apply-rate");
  apply.dataset.value = applies === null ? "" : String(Math.round(applies));
  apply.textContent = applies === null ? "–" : number.format(Math.round(applies));
  $("queue-lag").dataset.value = lag === null ? "" : String(lag);
  $("queue-lag").textContent = lag === null ? "–" : number.format(lag);
  const { reasons, handled } = pauses(ready, metrics, rebuilding, lag ?? 0, issued);
  showPauses(reasons);
  service.previous = { at, applies: all, failed, latency, handled, lag, issued };
}

function showPauses(reasons) {
  const list = $("pause");
  list.replaceChildren(
    ...reasons.map(([kind, text]) => {
      const item = document.createElement("li");
      item.dataset.pause = kind;
      item.textContent = text;
      return item;
    }),
  );
  list.hidden = reasons.length === 0;
}

let timer = null;
let generation = 0;
let running = false;
let again = false;

// Reads everything once and shows it; false when signed out (nothing more to read).
async function once() {
  if (!token()) {
    signIn("The console reads and steers every campaign: it needs the admin token.");
    return false;
  }
  const mine = generation;
  try {
    const readDeadLetters = service.readDeadLetters || service.refreshes % DEAD_LETTERS_EVERY === 0;
    service.readDeadLetters = false;
    // Each read on its own: with the database away the campaigns cannot be listed,
    // and that is when the health part matters most.
    const [list, metrics, ready, failures] = await Promise.all([
      call("GET", "/admin/campaigns").catch((error) => error),
      // The admin token opens /metrics too when the service sets a metrics token.
      call("GET", "/metrics").catch(() => ""),
      notReady().catch(() => ["unknown"]),
      readDeadLetters ? call("GET", "/admin/dead-letters").catch((error) => error) : null,
    ]);
    // Signed out (or in again) while these were read: they are not shown.
    if (mine !== generation) return false;
    for (const answer of [list, failures]) {
      if (answer instanceof Refused) throw answer;
    }
    const at = performance.now();
    $("console").hidden = false;
    $("sign-out").hidden = false;
    $("service-figures").hidden = false;
    if (failures && !(failures instanceof Error)) {
      service.deadLetters = deadLetters.show(failures.dead_letters, refreshSoon);
    }
    let rebuilding = 0;
    // Coupons issued over every campaign: whether issuing moves, whoever's worker it is.
    let issued = null;
    if (list instanceof Error) {
      $("status").hidden = false;
      $("status").textContent = `Campaigns not updated: ${list.message}. Trying again.`;
    } else {
      const lag = metrics ? metric(metrics, "firstcome_queue_lag") : null;
      rebuilding = campaigns.show(list.campaigns, at, refreshSoon, lag);
      issued = list.campaigns.reduce((sum, campaign) => sum + campaign.issued, 0);
      if (!list.campaigns.length) {
        $("status").hidden = false;
        $("status").textContent = "No campaign yet.";
      } else if (/not updated|^No campaign yet/i.test($("status").textContent)) {
        $("status").hidden = true;
      }
    }
    showService(at, metrics, ready, rebuilding, issued);
    service.refreshes += 1;
    $("updated").textContent = new Date().toLocaleTimeString();
  } catch (error) {
    if (mine !== generation) return false;
    if (error instanceof Refused) {
      setToken(null);
      signIn(error.message);
      return false;
    }
    $("status").hidden = false;
    $("status").textContent = `Not updated: ${error.message}. Trying again.`;
  }
  return true;
}

// One read at a time: a refresh asked for while one runs follows it at once.
async function refresh() {
  if (running) {
    again = true;
    return;
  }
  running = true;
  clearTimeout(timer);
  let going = false;
  try {
    going = await once();
  } finally {
    running = false;
  }
  if (again) {
    again = false;
    return refresh();
  }
  if (going) timer = setTimeout(refresh, REFRESH_MS);
}

// After an action: read everything again now, dead letters included.
function refreshSoon() {
  service.readDeadLetters = true;
  refresh();
}

refresh();
