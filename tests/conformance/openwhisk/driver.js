// Drives the `openwhisk` npm client (unmodified) against a host for the conformance tests.
// stdin: a JSON list of steps, each `[METHOD, OPTIONS]` (METHOD as `actions.invoke`) or
// `{"parallel": N, "step": [METHOD, OPTIONS]}`. stdout: one JSON list, per step
// `{"ok": VALUE}` or `{"error": {"statusCode", "message", "body"}}` (a list of those for a
// parallel step). Environment: OW_APIHOST, OW_AUTH.
'use strict';

const fs = require('fs');
const openwhisk = require('openwhisk');

const ow = openwhisk({ apihost: process.env.OW_APIHOST, api_key: process.env.OW_AUTH });

async function call([method, options]) {
  const parts = method.split('.');
  const name = parts.pop();
  const target = parts.reduce((o, k) => o[k], ow);
  try {
    return { ok: await target[name](options) };
  } catch (e) {
    return { error: { statusCode: e.statusCode, message: e.message, body: e.error } };
  }
}

async function main() {
  const steps = JSON.parse(fs.readFileSync(0, 'utf8'));
  const out = [];
  for (const step of steps) {
    if (Array.isArray(step)) {
      out.push(await call(step));
    } else {
      const runs = [];
      for (let i = 0; i < step.parallel; i++) runs.push(call(step.step));
      out.push(await Promise.all(runs));
    }
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack));
  process.exit(1);
});
