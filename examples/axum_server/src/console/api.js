// Every request the console makes: the service's own API, with the admin token. The
// console does nothing the API does not do and check.
const KEY = "firstcome-admin-token";

export const token = () => sessionStorage.getItem(KEY);

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

// The admin token was refused (401): the console shows nothing but the sign-in.
export class Refused extends Error {}

// Any other answer that is not a success, with the API's code, message and field.
export class Failed extends Error {
  constructor(status, body) {
    super(body?.message ?? `the service answered ${status}`);
    this.status = status;
    this.code = body?.error ?? null;
    this.field = body?.field ?? null;
  }
}

// `method path` with `body` as JSON; the answer's JSON (or text).
export async function call(method, path, body) {
  const headers = { authorization: `Bearer ${token()}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) throw new Refused("That token was refused.");
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new Failed(response.status, parsed);
  return parsed ?? text;
}

// `GET /readyz`: the backends that do not answer (empty when ready). No token needed.
export async function notReady() {
  const response = await fetch("/readyz", { cache: "no-store" });
  if (response.ok) return [];
  const body = await response.json().catch(() => null);
  const ports = (body?.message ?? "").replace(/^not ready:\s*/, "");
  return ports ? ports.split(/,\s*/) : ["unknown"];
}
