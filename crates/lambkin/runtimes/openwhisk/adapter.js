/**
 * Lambkin's OpenWhisk adapter for `nodejs:*` actions: the Lambda handler of
 * every Node action's function (`__openwhisk_adapter.handler`). The host packs
 * it with the action's code (`__openwhisk_action.js`) and entry point
 * (`__openwhisk_action.json`); it runs the action as OpenWhisk's Node runtime
 * does (openwhisk-runtime-nodejs): the code is evaluated once per instance and
 * `main` found as a global or on `module.exports`; `main(params)` may return
 * an object or a promise; a synchronous throw is "An error has occurred: ..."
 * (a developer error), a rejected promise `{"error": ...}` (an application
 * error), `undefined` is `{}`.
 *
 * The event is `{"value": PARAMS, "env": {"__OW_...": ...}}` (or
 * `{"check": true}`: load the code and report, run nothing). The answer is
 * `{"returned": V}`, `{"threw": MESSAGE}` or `{"init": MESSAGE}`, with the
 * activation's output lines as `logs` (`[stream, epoch ms, text]`); output
 * still reaches the function's log too.
 */

'use strict';

const fs = require('fs');
const path = require('path');
const util = require('util');

let main;

function load() {
  const meta = JSON.parse(fs.readFileSync(path.join(__dirname, '__openwhisk_action.json'), 'utf8'));
  if (meta.binary) {
    // A zip action: its package.json's main, or its index.js, exports the entry point.
    // The trailing slash: the directory, not __openwhisk_action.json beside it.
    const dir = `${path.join(__dirname, '__openwhisk_action')}/`;
    const exported = require(dir)[meta.main];
    if (typeof exported !== 'function') {
      throw new Error(`Action entrypoint '${meta.main}' is not a function.`);
    }
    return exported;
  }
  const file = path.join(__dirname, '__openwhisk_action.js');
  const code = fs.readFileSync(file, 'utf8');
  const entry = meta.main;
  const module = { exports: {} };
  // As the OpenWhisk runtime: the code, then `main` by name, else from the module's exports.
  const wrapped = new Function(
    'module',
    'exports',
    'require',
    '__filename',
    '__dirname',
    `${code}\n;try { return ${entry}; } catch (e) {\n` +
      `  if (e.name === 'ReferenceError') return module.exports.${entry} || exports.${entry};\n` +
      '  throw e;\n}',
  );
  const found = wrapped(module, module.exports, require, file, __dirname);
  if (typeof found !== 'function') {
    throw new Error(`Action entrypoint '${entry}' is not a function.`);
  }
  return found;
}

/**
 * Records what an activation writes to stdout and stderr, line by line, into `lines` while one
 * runs (the hooks stay installed; between activations they only pass output on).
 */
let lines = null;
const partial = { stdout: '', stderr: '' };
let hooked = false;

function hook() {
  if (hooked) return;
  hooked = true;
  for (const name of ['stdout', 'stderr']) {
    const stream = process[name];
    const write = stream.write;
    stream.write = function captured(chunk, encoding, callback) {
      if (lines !== null) {
        const text =
          partial[name] + (typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
        const parts = text.split('\n');
        partial[name] = parts.pop();
        const now = Date.now();
        for (const line of parts) lines.push([name, now, line]);
      }
      return write.call(stream, chunk, encoding, callback);
    };
  }
}

/** Starts recording with console going to the plain streams, as in OpenWhisk's runtime. */
function capture() {
  hook();
  lines = [];
  const consoles = {};
  for (const m of ['log', 'info', 'debug', 'trace', 'warn', 'error']) consoles[m] = console[m];
  const out = (...args) => process.stdout.write(`${util.format(...args)}\n`);
  const err = (...args) => process.stderr.write(`${util.format(...args)}\n`);
  console.log = console.info = console.debug = console.trace = out;
  console.warn = console.error = err;
  return () => {
    const recorded = lines;
    lines = null;
    for (const name of ['stdout', 'stderr']) {
      if (partial[name]) recorded.push([name, Date.now(), partial[name]]);
      partial[name] = '';
    }
    Object.assign(console, consoles);
    return recorded;
  };
}

/** The `__OW_*` variables as last set: only those that change are set again. */
const envSet = {};

function setEnv(key, value) {
  if (envSet[key] !== value) {
    process.env[key] = value;
    envSet[key] = value;
  }
}

function serializeError(e) {
  if (e instanceof Error) {
    return Object.assign({ name: e.name, message: e.message, stack: e.stack }, e);
  }
  return e;
}

async function run(params) {
  let value;
  try {
    value = main(params);
  } catch (e) {
    console.error(e);
    return { threw: `An error has occurred: ${e}` };
  }
  try {
    value = await value;
  } catch (e) {
    return { returned: { error: e ? serializeError(e) : {} } };
  }
  return { returned: value === undefined ? {} : value };
}

exports.handler = async (event, context) => {
  const started = Date.now();
  let initMs;
  if (!main) {
    try {
      main = load();
      initMs = Date.now() - started;
    } catch (e) {
      return {
        init: `Initialization has failed due to: ${e && e.stack ? String(e.stack) : e}`,
        logs: [],
        started_ms: started,
      };
    }
  }
  if (event && event.check) return { returned: {}, logs: [], init_ms: initMs };
  const env = (event && event.env) || {};
  for (const key of Object.keys(env)) setEnv(key, String(env[key]));
  setEnv('__OW_DEADLINE', String(Date.now() + context.getRemainingTimeInMillis()));
  const stop = capture();
  let answer;
  try {
    answer = await run((event && event.value) || {});
  } finally {
    answer = Object.assign(answer || {}, { logs: stop() });
  }
  answer.started_ms = started;
  if (initMs !== undefined) answer.init_ms = initMs;
  return answer;
};
