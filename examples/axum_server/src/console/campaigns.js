// One card per campaign: its counts, its charts, why it is paused, and the operator's
// buttons (close and reopen after a confirmation, settle now).
import { call } from "./api.js";
import { Series, chart, draw } from "./charts.js";

const number = new Intl.NumberFormat();
const whole = (value) => number.format(Math.round(value));

// Per campaign id: its series and what the last refresh saw.
const seen = new Map();

function setNumber(element, value) {
  element.dataset.value = value === null ? "" : String(value);
  element.textContent = value === null ? "–" : number.format(value);
}

const CARD = `<h2></h2><div class="state"></div><p class="pause" hidden></p>
  <div class="bar"><i class="issued"></i><i class="waiting"></i></div>
  <dl>
    <dt>cap</dt><dd data-field="cap"></dd>
    <dt>per user</dt><dd data-field="per_user_limit"></dd>
    <dt>shards</dt><dd data-field="shards"></dd>
    <dt>admitted</dt><dd data-field="admitted"></dd>
    <dt>issued</dt><dd data-field="issued"></dd>
    <dt>remaining</dt><dd data-field="remaining"></dd>
    <dt>waiting to be issued</dt><dd data-field="waiting"></dd>
    <dt>admitted/s</dt><dd data-field="admit_rate"></dd>
    <dt>issued/s</dt><dd data-field="issue_rate"></dd>
    <dt>window</dt><dd data-field="window"></dd>
  </dl>
  <div class="charts"></div>
  <div class="actions">
    <button type="button" data-action="close">Close</button>
    <button type="button" data-action="reopen">Reopen</button>
    <button type="button" data-action="settle">Settle now</button>
  </div>
  <div class="confirm" hidden><p></p>
    <button type="button" data-action="confirm">Yes</button>
    <button type="button" class="quiet" data-action="cancel">Cancel</button></div>
  <p class="result" role="status"></p>`;

const QUESTIONS = {
  close: (c) => `Close #${c.id} now? Nobody is admitted from then on; everyone admitted already still gets a coupon.`,
  reopen: (c) => `Reopen #${c.id} now? Applications are admitted again up to its cap.`,
};

async function act(section, campaign, action, refresh) {
  const result = section.querySelector(".result");
  const buttons = section.querySelectorAll(".actions button");
  result.textContent = "…";
  // One request at a time per card: a double tap on a phone sends one.
  for (const button of buttons) button.disabled = true;
  try {
    if (action === "settle") {
      const report = await call("POST", `/admin/settle?campaign=${campaign.id}`);
      result.textContent = `Settled: ${report.unsettled} admissions without a coupon past the grace, ${report.republished} published again.`;
    } else {
      await call("POST", `/admin/campaigns/${campaign.id}/${action}`);
      result.textContent = action === "close" ? "Closed: nobody is admitted from now on." : "Reopened: admitting again.";
    }
  } catch (error) {
    result.textContent = `Not done: ${error.message}`;
  }
  for (const button of buttons) button.disabled = false;
  refresh();
}

function card(campaign, refresh) {
  let section = document.querySelector(`[data-campaign="${campaign.id}"]`);
  if (section) return section;
  section = document.createElement("section");
  section.className = "campaign";
  section.dataset.campaign = campaign.id;
  section.innerHTML = CARD;
  const charts = section.querySelector(".charts");
  const state = {
    series: { admit_rate: new Series(), issue_rate: new Series(), waiting: new Series() },
    charts: {
      admit_rate: chart(charts, "admit_rate", "admitted/s", whole),
      issue_rate: chart(charts, "issue_rate", "issued/s", whole),
      waiting: chart(charts, "waiting", "waiting", whole),
    },
    previous: null,
    rebuildingSince: null,
    campaign,
  };
  seen.set(String(campaign.id), state);
  const confirm = section.querySelector(".confirm");
  section.addEventListener("click", (event) => {
    const action = event.target.dataset?.action;
    if (!action) return;
    const current = state.campaign;
    if (action === "close" || action === "reopen") {
      confirm.dataset.pending = action;
      confirm.querySelector("p").textContent = QUESTIONS[action](current);
      confirm.hidden = false;
    } else if (action === "cancel") {
      confirm.hidden = true;
    } else if (action === "confirm") {
      confirm.hidden = true;
      act(section, current, confirm.dataset.pending, refresh);
    } else if (action === "settle") {
      act(section, current, "settle", refresh);
    }
  });
  $campaigns().append(section);
  return section;
}

const $campaigns = () => document.getElementById("campaigns");

function window_of(campaign) {
  const at = (instant) => (instant ? new Date(instant).toLocaleString() : null);
  const opens = at(campaign.opens_at);
  const closes = at(campaign.closes_at);
  if (!opens && !closes) return "always";
  return `${opens ?? "now"} → ${closes ?? "no end"}`;
}

// Shows `campaigns` (GET /admin/campaigns) read at `at` (ms), with the worker queue's
// lag (`lag`, null if unknown); removes cards of campaigns no longer listed. Answers
// how many are paused for a rebuild.
export function show(campaigns, at, refresh, lag) {
  const listed = new Set();
  for (const campaign of campaigns) {
    const id = String(campaign.id);
    listed.add(id);
    const section = card(campaign, refresh);
    const state = seen.get(id);
    state.campaign = campaign;
    const rate = (key) => {
      const before = state.previous;
      if (!before) return null;
      const seconds = (at - before.at) / 1000;
      return seconds > 0 ? Math.max(0, Math.round((campaign[key] - before[key]) / seconds)) : null;
    };
    const waiting = Math.max(0, campaign.admitted - campaign.issued);
    const values = { admit_rate: rate("admitted"), issue_rate: rate("issued"), waiting };
    section.querySelector("h2").textContent = `#${campaign.id} ${campaign.name}`;
    const label = section.querySelector(".state");
    label.textContent = campaign.state.replace("_", " ");
    label.className = `state ${campaign.state}`;
    const field = (name) => section.querySelector(`[data-field="${name}"]`);
    for (const name of ["cap", "per_user_limit", "shards", "admitted", "issued", "remaining"]) {
      setNumber(field(name), campaign[name]);
    }
    setNumber(field("waiting"), waiting);
    setNumber(field("admit_rate"), values.admit_rate);
    setNumber(field("issue_rate"), values.issue_rate);
    field("window").textContent = window_of(campaign);
    for (const [name, series] of Object.entries(state.series)) {
      series.push(values[name]);
      draw(state.charts[name], series);
    }
    const share = (value) => (campaign.cap ? `${Math.min(100, (100 * value) / campaign.cap)}%` : "0");
    section.querySelector(".bar .issued").style.width = share(campaign.issued);
    section.querySelector(".bar .waiting").style.width = share(waiting);
    section.querySelector('[data-action="close"]').hidden = campaign.state === "closed";
    section.querySelector('[data-action="reopen"]').hidden = campaign.state !== "closed";
    pause(section, state, campaign, lag, values.issue_rate);
    state.previous = { at, admitted: campaign.admitted, issued: campaign.issued };
  }
  for (const section of document.querySelectorAll("[data-campaign]")) {
    if (!listed.has(section.dataset.campaign)) {
      seen.delete(section.dataset.campaign);
      section.remove();
    }
  }
  return campaigns.filter((campaign) => campaign.rebuilding).length;
}

// Why a campaign does not admit although it could: its counter is being rebuilt. A
// rebuild ends when the queue has handed over what it holds, not at a set time: the
// estimate is that backlog at the rate it is being issued.
function pause(section, state, campaign, lag, issueRate) {
  const note = section.querySelector(".pause");
  if (!campaign.rebuilding) {
    state.rebuildingSince = null;
    note.hidden = true;
    return;
  }
  state.rebuildingSince ??= new Date();
  note.hidden = false;
  const until =
    lag > 0 && issueRate > 0
      ? ` ${number.format(lag)} tickets wait in the queue, issued at ${whole(issueRate)}/s: about ${Math.ceil(lag / issueRate)} s more.`
      : lag === 0
        ? " The queue is empty: it should end within seconds."
        : "";
  note.textContent = `Paused since ${state.rebuildingSince.toLocaleTimeString()}: its counter lost its memory and is being rebuilt from the store and the queue. Applications answer 503 until the queue has handed over what it holds; nobody is admitted twice.${until}`;
}
