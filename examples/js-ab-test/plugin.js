// A/B experiment plugin, in JavaScript.
//
// Requests carrying the experiment cookie keep their variant; new visitors are
// assigned one (a stable hash of the request id) and get a `Set-Cookie` back, so
// they stay in it. The upstream sees `x-experiment: <name>=<variant>`, the access
// log and later plugins see the attribute `experiment`. Clients whose
// User-Agent contains a blocked substring get a 403 from the plugin itself.
//
// Config:
//   experiment:          name of the experiment (required)
//   variants:            variant names, default ["A", "B"]
//   cookie:              cookie name, default "ab_<experiment>"
//   max_age:             cookie lifetime in seconds, default 30 days
//   blocked_user_agents: case-insensitive substrings, default []
//   variant_service:     a service (granted in the attachment's `callouts`)
//                        that picks new visitors' variants: GET
//                        <variant_path>?experiment=<name> answers a variant
//                        name as text; no answer (or an unknown name) falls
//                        back to the hash. Default: none, the hash only.
//   variant_path:        default "/variant"

import { counterAdd } from 'gatehouse:plugin/host@0.1.0';
import { send } from 'gatehouse:plugin/callout@0.1.0';

let settings;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text) => encoder.encode(text);
const text = (data) => decoder.decode(data);

const TOKEN = /^[A-Za-z0-9_.-]+$/;

export function init(config) {
  const c = JSON.parse(config);
  if (typeof c.experiment !== 'string' || !TOKEN.test(c.experiment)) {
    throw 'experiment: a name of letters, digits, "_", "-" or "." is required';
  }
  const variants = c.variants ?? ['A', 'B'];
  if (!Array.isArray(variants) || variants.length < 2 || !variants.every((v) => typeof v === 'string' && TOKEN.test(v))) {
    throw 'variants: at least two names of letters, digits, "_", "-" or "."';
  }
  const blocked = c.blocked_user_agents ?? [];
  if (!Array.isArray(blocked) || !blocked.every((b) => typeof b === 'string' && b.length > 0)) {
    throw 'blocked_user_agents: a list of non-empty strings';
  }
  settings = {
    experiment: c.experiment,
    variants,
    cookie: c.cookie ?? `ab_${c.experiment}`,
    maxAge: c.max_age ?? 30 * 24 * 3600,
    blocked: blocked.map((b) => b.toLowerCase()),
    variantService: c.variant_service,
    variantPath: c.variant_path ?? '/variant',
  };
  // Ask for the response hook: it sets the cookie for newly assigned visitors.
  return { responseHeaders: true };
}

function cookieValue(header, name) {
  if (!header) return undefined;
  for (const part of text(header).split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

// FNV-1a over the request id: stable for one request, spread evenly across requests.
function bucket(id, n) {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % n;
}

// A new visitor's variant: the variant service's choice when configured and
// it answers in time, else the hash.
function assign(ctx) {
  if (settings.variantService) {
    try {
      // A callout is a plain call: the gateway waits for the network, not a thread.
      const answer = send({
        service: settings.variantService,
        method: 'GET',
        path: `${settings.variantPath}?experiment=${settings.experiment}`,
        headers: [],
        body: new Uint8Array(),
        timeoutMs: 200,
      });
      const chosen = text(answer.body).trim();
      if (answer.status === 200 && settings.variants.includes(chosen)) return chosen;
    } catch (e) {
      // Down, slow or not granted (the error is in e.payload): use the hash.
    }
  }
  return settings.variants[bucket(ctx.requestId(), settings.variants.length)];
}

function forbidden(ctx) {
  const body = JSON.stringify({ error: 'blocked_user_agent', request_id: ctx.requestId() });
  return {
    tag: 'respond',
    val: { status: 403, headers: [{ name: 'content-type', value: bytes('application/json') }], body: bytes(body) },
  };
}

export function onRequest(ctx, req) {
  const ua = req.header('user-agent');
  if (ua && settings.blocked.length > 0) {
    const agent = text(ua).toLowerCase();
    if (settings.blocked.some((b) => agent.includes(b))) return forbidden(ctx);
  }
  let variant = cookieValue(req.header('cookie'), settings.cookie);
  if (!settings.variants.includes(variant)) {
    variant = assign(ctx);
    ctx.setAttribute('experiment.assigned', variant);
    // A Prometheus counter per variant: gatehouse_plugin_counter_total{name="assigned_A"}.
    counterAdd(`assigned_${variant}`, 1n);
  }
  ctx.setAttribute('experiment', `${settings.experiment}=${variant}`);
  req.setHeader('x-experiment', bytes(`${settings.experiment}=${variant}`));
  return { tag: 'continue' };
}

export function onResponse(ctx, req, resp) {
  const assigned = ctx.attribute('experiment.assigned');
  if (assigned !== undefined) {
    const cookie = `${settings.cookie}=${assigned}; Path=/; Max-Age=${settings.maxAge}; SameSite=Lax`;
    resp.appendHeader('set-cookie', bytes(cookie));
  }
  return { tag: 'continue' };
}

// Hooks the plugin does not ask for in `init` are never called, but the
// component must still export them.
export function onRequestBody() {
  return { tag: 'continue' };
}

export function onResponseBody() {
  return { tag: 'continue' };
}
