// The form that creates a campaign through POST /campaigns. It checks nothing itself:
// the API does, and its message is shown next to the field it names.
import { Failed, call } from "./api.js";

const form = () => document.getElementById("create");

// What the form's text becomes in the body: a number when it reads as one, else the
// text itself (for the API to refuse with its own message); absent when empty.
function integer(text) {
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  return /^-?\d+$/.test(trimmed) ? Number(trimmed) : trimmed;
}

function instant(text) {
  if (text === "") return undefined;
  const date = new Date(text); // datetime-local: the browser's time zone
  return Number.isNaN(date.getTime()) ? text : date.toISOString();
}

function body(data) {
  const definition = {
    name: data.get("name"),
    cap: integer(data.get("cap")) ?? null,
    per_user_limit: integer(data.get("per_user_limit")),
    shards: integer(data.get("shards")),
    opens_at: instant(data.get("opens_at")),
    closes_at: instant(data.get("closes_at")),
  };
  for (const key of Object.keys(definition)) {
    if (definition[key] === undefined) delete definition[key];
  }
  return definition;
}

function clearErrors() {
  for (const error of form().querySelectorAll("[data-error-for]")) error.textContent = "";
}

// Wires the form; `created(campaign)` is called after a creation.
export function wire(created) {
  const panel = form();
  document.getElementById("show-create").addEventListener("click", () => {
    panel.hidden = false;
    panel.querySelector("input").focus();
  });
  document.getElementById("hide-create").addEventListener("click", () => {
    panel.hidden = true;
  });
  panel.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    // POST /campaigns is not idempotent: one request per press, not per tap.
    const submit = panel.querySelector("button:not([type])");
    if (submit.disabled) return;
    submit.disabled = true;
    try {
      const campaign = await call("POST", "/campaigns", body(new FormData(panel)));
      panel.reset();
      panel.hidden = true;
      created(campaign);
    } catch (error) {
      const field = error instanceof Failed ? error.field ?? "" : "";
      const place =
        panel.querySelector(`[data-error-for="${CSS.escape(field)}"]`) ??
        panel.querySelector('[data-error-for=""]');
      place.textContent = error.message;
    }
    submit.disabled = false;
  });
}
