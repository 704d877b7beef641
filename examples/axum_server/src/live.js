// The live page's script (GET /ui/live.js): no inline script, so the page's content
// security policy can forbid every script but this file.
"use strict";
// The admin token comes from the address's fragment (never sent to the server) or the
// form, and is kept for this tab only.
const KEY = "firstcome-admin-token";
const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromFragment) {
  sessionStorage.setItem(KEY, fromFragment);
  history.replaceState(null, "", location.pathname + location.search);
}
const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat();
let previous = null; // { at, admitted: Map, issued: Map, applies }
let timer = null;

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("token").value);
  $("login").hidden = true;
  refresh();
});

function askForToken(why) {
  $("login").hidden = false;
  $("login-why").textContent = why;
}

function setNumber(element, value) {
  element.dataset.value = value === null ? "" : String(value);
  element.textContent = value === null ? "–" : number.format(value);
}

// Sums the samples of `name` whose labels contain every `labels` entry.
function metric(text, name, labels = []) {
  let sum = null;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    if (!labels.every((label) => line.includes(label))) continue;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(value)) sum = (sum ?? 0) + value;
  }
  return sum;
}

function rate(now, before, key) {
  if (!previous || before === undefined || now === null) return null;
  const seconds = (performance.now() - previous.at) / 1000;
  return seconds > 0 ? Math.max(0, Math.round((now - before) / seconds)) : null;
}

function card(campaign) {
  let section = document.querySelector(`[data-campaign="${campaign.id}"]`);
  if (!section) {
    section = document.createElement("section");
    section.className = "campaign";
    section.dataset.campaign = campaign.id;
    section.innerHTML = `<h2></h2><div class="state"></div>
      <div class="bar"><i class="issued"></i><i class="waiting"></i></div>
      <dl>
        <dt>cap</dt><dd data-field="cap"></dd>
        <dt>admitted</dt><dd data-field="admitted"></dd>
        <dt>issued</dt><dd data-field="issued"></dd>
        <dt>remaining</dt><dd data-field="remaining"></dd>
        <dt>waiting to be issued</dt><dd data-field="waiting"></dd>
        <dt>admitted/s</dt><dd data-field="admit_rate"></dd>
        <dt>issued/s</dt><dd data-field="issue_rate"></dd>
      </dl>`;
    $("campaigns").append(section);
  }
  return section;
}

function show(campaigns, metrics) {
  const at = performance.now();
  const applies = metric(metrics, "firstcome_requests_total", ['route="apply"']);
  setNumber($("apply-rate"), rate(applies, previous?.applies));
  setNumber($("queue-lag"), metric(metrics, "firstcome_queue_lag"));
  const seen = new Set();
  for (const campaign of campaigns) {
    seen.add(String(campaign.id));
    const section = card(campaign);
    section.querySelector("h2").textContent = `#${campaign.id} ${campaign.name}`;
    const state = section.querySelector(".state");
    state.textContent = campaign.state.replace("_", " ");
    state.className = `state ${campaign.state}`;
    const waiting = Math.max(0, campaign.admitted - campaign.issued);
    const field = (name) => section.querySelector(`[data-field="${name}"]`);
    setNumber(field("cap"), campaign.cap);
    setNumber(field("admitted"), campaign.admitted);
    setNumber(field("issued"), campaign.issued);
    setNumber(field("remaining"), campaign.remaining);
    setNumber(field("waiting"), waiting);
    setNumber(field("admit_rate"), rate(campaign.admitted, previous?.admitted.get(campaign.id)));
    setNumber(field("issue_rate"), rate(campaign.issued, previous?.issued.get(campaign.id)));
    const share = (value) => campaign.cap ? `${Math.min(100, (100 * value) / campaign.cap)}%` : "0";
    section.querySelector(".bar .issued").style.width = share(campaign.issued);
    section.querySelector(".bar .waiting").style.width = share(waiting);
  }
  for (const section of document.querySelectorAll("[data-campaign]")) {
    if (!seen.has(section.dataset.campaign)) section.remove();
  }
  previous = {
    at,
    applies,
    admitted: new Map(campaigns.map((c) => [c.id, c.admitted])),
    issued: new Map(campaigns.map((c) => [c.id, c.issued])),
  };
  $("updated").textContent = new Date().toLocaleTimeString();
  $("status").hidden = campaigns.length > 0;
  $("status").textContent = "No campaign yet.";
}

async function refresh() {
  clearTimeout(timer);
  const token = sessionStorage.getItem(KEY);
  if (!token) {
    askForToken("The live page reads every campaign: it needs the admin token.");
    return;
  }
  try {
    const headers = { authorization: `Bearer ${token}` };
    const [list, metrics] = await Promise.all([
      fetch("/admin/campaigns", { headers, cache: "no-store" }),
      // The admin token opens /metrics too when the service sets a metrics token.
      fetch("/metrics", { headers, cache: "no-store" }),
    ]);
    if (list.status === 401) {
      sessionStorage.removeItem(KEY);
      askForToken("That token was refused.");
      return;
    }
    if (!list.ok) throw new Error(`campaigns: ${list.status} ${(await list.json()).message ?? ""}`);
    show((await list.json()).campaigns, metrics.ok ? await metrics.text() : "");
  } catch (error) {
    $("status").hidden = false;
    $("status").textContent = `Not updated: ${error.message}. Trying again.`;
  }
  timer = setTimeout(refresh, 1000);
}

refresh();
