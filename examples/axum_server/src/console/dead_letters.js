// The dead letters (GET /admin/dead-letters): admissions the store refused for good,
// each with its error and a button that replays it (POST /admin/dead-letters/replay).
import { call } from "./api.js";

// Shown at most: the newest first.
const SHOWN = 50;

const list = () => document.getElementById("dead-letter-list");

function entry(failure, refresh) {
  const item = document.createElement("li");
  item.dataset.ticket = failure.ticket.ticket_id;
  const what = document.createElement("p");
  what.textContent = `#${failure.ticket.campaign} user ${failure.ticket.user} slot ${failure.ticket.slot}: ${failure.error}`;
  const when = document.createElement("p");
  when.className = "note";
  when.textContent = `${failure.attempts} attempt(s), last ${new Date(failure.last_seen).toLocaleString()}; ticket ${failure.ticket.ticket_id}`;
  const result = document.createElement("p");
  result.className = "result";
  result.setAttribute("role", "status");
  item.append(what, when);
  if (failure.replayed_at) {
    item.classList.add("replayed");
    result.textContent = `Replayed ${new Date(failure.replayed_at).toLocaleString()}.`;
  } else {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Replay";
    button.dataset.action = "replay";
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const report = await call("POST", "/admin/dead-letters/replay", {
          campaign: failure.ticket.campaign,
          ticket_ids: [failure.ticket.ticket_id],
        });
        const failed = report.failed?.[0];
        result.textContent = report.replayed.length
          ? "Replayed: the worker issues it now."
          : failed
            ? `Not replayed: ${failed[1] ?? failed}`
            : "Nothing replayed (already replayed?).";
      } catch (error) {
        result.textContent = `Not replayed: ${error.message}`;
        button.disabled = false;
      }
      refresh();
    });
    item.append(button);
  }
  item.append(result);
  return item;
}

// Shows `failures`; answers how many wait for a replay.
export function show(failures, refresh) {
  const waiting = failures.filter((failure) => !failure.replayed_at).length;
  const count = document.getElementById("dead-letter-count");
  count.dataset.value = String(waiting);
  count.textContent = String(waiting);
  const newest = [...failures].sort((a, b) => b.last_seen.localeCompare(a.last_seen)).slice(0, SHOWN);
  // Rebuilt only when what is listed changed, so that a click is never lost.
  const key = newest.map((f) => `${f.ticket.ticket_id}:${f.replayed_at ?? ""}:${f.attempts}`).join(",");
  if (list().dataset.key !== key) {
    list().dataset.key = key;
    list().replaceChildren(...newest.map((failure) => entry(failure, refresh)));
  }
  return waiting;
}
