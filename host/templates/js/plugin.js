// {{name}}: a Gatehouse plugin in JavaScript. It sets `x-greeting` on every
// request it sees. The hooks are the exports of `wit/plugin.wit`, in camelCase.

const encoder = new TextEncoder();
let greeting;

// Runs once per instance with the attachment's config as JSON. A thrown string
// is shown to the operator at load time and the plugin is not attached.
export function init(config) {
  const c = JSON.parse(config);
  greeting = c.greeting ?? 'hello from {{name}}';
  if (typeof greeting !== 'string' || greeting === '') throw 'greeting must be a non-empty string';
  // Features: { responseHeaders, requestBody, responseBody } (only what you need).
  return {};
}

export function onRequest(ctx, req) {
  req.setHeader('x-greeting', encoder.encode(greeting));
  return { tag: 'continue' };
  // Or answer the client yourself:
  // return { tag: 'respond', val: { status: 403, headers: [], body: encoder.encode('no') } };
}

// Hooks not asked for in `init` are never called, but must be exported.
export function onRequestBody() {
  return { tag: 'continue' };
}

export function onResponse() {
  return { tag: 'continue' };
}

export function onResponseBody() {
  return { tag: 'continue' };
}
