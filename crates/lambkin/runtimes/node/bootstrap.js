/**
 * Lambkin's built-in runtime client for the `nodejs*` Lambda runtimes.
 *
 * The host writes this file to disk and starts it as `node bootstrap.js` with
 * the working directory set to `$LAMBDA_TASK_ROOT`. It loads the handler named
 * by `_HANDLER`, then serves invocations from the Lambda Runtime API
 * 2018-06-01 at `$AWS_LAMBDA_RUNTIME_API` until the API goes away.
 *
 * Behaviour follows the public Node.js runtime client
 * (aws-lambda-nodejs-runtime-interface-client): handler resolution (.js, .mjs,
 * .cjs, `package.json` "type"), the context object, the three handler styles
 * (async/promise, `callback`, `context.succeed/fail/done`) with
 * `callbackWaitsForEmptyEventLoop`, the `Runtime.*` init error types, the
 * error payload `{"errorType", "errorMessage", "trace"}` and the console log
 * format. Lambkin-specific: `LAMBKIN_PAYLOAD_ENCODING=binary` hands the
 * handler the event as a Buffer, and in `json` mode a body that is not JSON
 * reaches the handler as a string instead of failing the invocation.
 *
 * Node.js built-in modules only; runs on Node 18 and later.
 */

'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const API_VERSION = '2018-06-01';
const USER_AGENT = `lambkin-nodejs/${process.version}`;

// ---------------------------------------------------------------------------
// Errors

/** Error classes of the public client; `name` is the reported errorType. */
class ImportModuleError extends Error {}
class HandlerNotFound extends Error {}
class MalformedHandlerName extends Error {}
class UserCodeSyntaxError extends Error {}
class UnhandledPromiseRejection extends Error {}
class NodeJsExit extends Error {}
for (const cls of [
  ImportModuleError,
  HandlerNotFound,
  MalformedHandlerName,
  UserCodeSyntaxError,
  UnhandledPromiseRejection,
  NodeJsExit,
]) {
  cls.prototype.name = `Runtime.${cls.name}`;
}

function isErrorLike(value) {
  return (
    value instanceof Error ||
    util.types.isNativeError(value) ||
    (value &&
      typeof value.name === 'string' &&
      typeof value.message === 'string' &&
      typeof value.stack === 'string')
  );
}

/** The §2.4 error payload for anything a handler failed with. */
function toErrorPayload(error) {
  try {
    if (isErrorLike(error)) {
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace: typeof error.stack === 'string' ? error.stack.split('\n') : [],
      };
    }
    // callback('boom'), context.fail() and friends: the real client reports
    // the JavaScript type of the value (so `context.fail()` gives
    // {"errorType":"string","errorMessage":"handled"}).
    return {
      errorType: typeof error,
      errorMessage: String(error),
      trace: [],
    };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

// ---------------------------------------------------------------------------
// Console: `<ISO time>\t<request id>\t<LEVEL>\t<message>` on stdout, as on
// Lambda (all levels go to stdout, so the host sees them in order).

let currentRequestId; // printed as "undefined" outside an invocation, as on Lambda

function patchConsole() {
  // Writes to pipes and files are synchronous in Node on POSIX; make sure of
  // it so output is in the pipe before the answer is POSTed (the host frames
  // each invocation's log).
  for (const stream of [process.stdout, process.stderr]) {
    if (stream._handle && typeof stream._handle.setBlocking === 'function') {
      stream._handle.setBlocking(true);
    }
  }
  const levels = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
  const wanted = (process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase();
  const minimum = Math.max(0, levels.indexOf(wanted));
  const make = (level) => {
    if (levels.indexOf(level) < minimum) return () => {};
    return (...args) => {
      process.stdout.write(
        `${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(...args)}\n`,
      );
    };
  };
  console.trace = make('TRACE');
  console.debug = make('DEBUG');
  console.info = make('INFO');
  console.log = console.info;
  console.warn = make('WARN');
  console.error = make('ERROR');
  console.fatal = make('FATAL');
}

/** Log an error the way the real client does: a tab and a JSON document. */
function logError(title, error) {
  let text;
  try {
    text = JSON.stringify(error, (_key, value) => {
      if (value instanceof Error) {
        const out = Object.assign(
          { errorType: value.name, errorMessage: value.message, code: value.code },
          value,
        );
        if (typeof value.stack === 'string') out.stack = value.stack.split('\n');
        return out;
      }
      return value;
    });
  } catch (_) {
    text = JSON.stringify(toErrorPayload(error));
  }
  console.error(title, `\t${text}`);
}

// ---------------------------------------------------------------------------
// Runtime API client

class RuntimeApiGone extends Error {}

/**
 * The error type header is free text, but it must stay one valid header line
 * whatever a user error's `name` is.
 */
function headerValue(text) {
  const cleaned = String(text).replace(/[^\x20-\x7e]/g, '').slice(0, 256);
  return cleaned || 'Unhandled';
}

/**
 * One persistent keep-alive connection to the Runtime API (an agent with a
 * single socket). Requests have no timeout: `/next` blocks for as long as the
 * host has no event.
 */
class RuntimeApi {
  constructor(address) {
    // Real Lambda gives `host:port`; also accept a `http://host:port/prefix`
    // form, as some emulators pass.
    let prefix = '';
    if (address.includes('://')) address = address.split('://')[1];
    const slash = address.indexOf('/');
    if (slash >= 0) {
      const rest = address.slice(slash + 1).replace(/^\/+|\/+$/g, '');
      prefix = rest ? `/${rest}` : '';
      address = address.slice(0, slash);
    }
    const colon = address.lastIndexOf(':');
    this.hostname = address.slice(0, colon).replace(/^\[|\]$/g, '');
    this.port = parseInt(address.slice(colon + 1), 10);
    this.base = `${prefix}/${API_VERSION}/runtime`;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  /** Resolve to `{status, headers, body}` (body a Buffer). */
  request(method, urlPath, body, headers, retried) {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          hostname: this.hostname,
          port: this.port,
          path: this.base + urlPath,
          method,
          agent: this.agent,
          headers: Object.assign({ 'User-Agent': USER_AGENT }, headers),
        },
        (res) => {
          const chunks = [];
          res.on('data', (chunk) => chunks.push(chunk));
          res.on('end', () =>
            resolve({
              status: res.statusCode,
              headers: res.headers,
              body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks),
            }),
          );
          res.on('error', (err) => reject(new RuntimeApiGone(String(err))));
        },
      );
      req.on('error', (err) => {
        // A keep-alive socket the server closed while idle fails on reuse;
        // send once more on a fresh connection. A failure on a fresh
        // connection means the host is gone.
        if (req.reusedSocket && !retried) {
          resolve(this.request(method, urlPath, body, headers, true));
        } else {
          reject(new RuntimeApiGone(`${method} ${urlPath}: ${err.message}`));
        }
      });
      req.end(body);
    });
  }

  async next() {
    const res = await this.request('GET', '/invocation/next', undefined, {});
    if (res.status !== 200) {
      throw new RuntimeApiGone(
        `GET /invocation/next: HTTP ${res.status} ${res.body.toString().slice(0, 200)}`,
      );
    }
    return res;
  }

  async post(urlPath, body, headers) {
    const res = await this.request(
      'POST',
      urlPath,
      body,
      Object.assign({ 'Content-Length': body.length }, headers),
    );
    if (res.status >= 500) {
      throw new RuntimeApiGone(`POST ${urlPath}: HTTP ${res.status}`);
    }
    if (res.status >= 300) {
      // 400/403/413: the host refused this answer (stale id, too large) and
      // settles the invocation itself; keep serving.
      process.stderr.write(
        `lambkin runtime: POST ${urlPath} answered HTTP ${res.status}: ${res.body
          .toString()
          .slice(0, 200)}\n`,
      );
    }
  }

  postResponse(id, body, contentType) {
    return this.post(`/invocation/${encodeURIComponent(id)}/response`, body, {
      'Content-Type': contentType,
    });
  }

  postError(id, error) {
    const payload = toErrorPayload(error);
    return this.post(
      `/invocation/${encodeURIComponent(id)}/error`,
      Buffer.from(JSON.stringify(payload)),
      {
        'Content-Type': 'application/json',
        'Lambda-Runtime-Function-Error-Type': headerValue(payload.errorType),
      },
    );
  }

  postInitError(error) {
    const payload = toErrorPayload(error);
    return this.post('/init/error', Buffer.from(JSON.stringify(payload)), {
      'Content-Type': 'application/json',
      'Lambda-Runtime-Function-Error-Type': headerValue(payload.errorType),
    });
  }
}

/** Exit non-zero: the Runtime API is gone (or the runtime itself broke). */
function fatal(err) {
  const what =
    err instanceof RuntimeApiGone ? `runtime API gone: ${err.message}` : err && err.stack;
  process.stderr.write(`lambkin runtime: ${what}\n`);
  process.exit(1);
}

// ---------------------------------------------------------------------------
// Handler loading (the public client's resolution order)

function packageTypeIsModule(dir) {
  // The nearest package.json decides; a node_modules folder or the root ends
  // the search.
  for (;;) {
    if (dir.endsWith(`${path.sep}node_modules`)) return false;
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      try {
        return JSON.parse(fs.readFileSync(file, 'utf8')).type === 'module';
      } catch (_) {
        return false;
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

async function loadModule(appRoot, moduleRoot, moduleName) {
  const base = path.resolve(appRoot, moduleRoot, moduleName);
  const requireIfExists = (file) =>
    fs.existsSync(file) ? require(file) : undefined;
  const importIfExists = async (file) =>
    fs.existsSync(file) ? import(pathToFileURL(file).href) : undefined;

  // An extensionless file is loaded with require().
  if (fs.existsSync(base) && fs.statSync(base).isFile()) return require(base);
  const isModule = packageTypeIsModule(path.dirname(base));
  const loaded =
    (isModule
      ? await importIfExists(`${base}.js`)
      : requireIfExists(`${base}.js`)) ||
    (await importIfExists(`${base}.mjs`)) ||
    requireIfExists(`${base}.cjs`);
  if (loaded) return loaded;
  // Last resort: Node's own resolution (a directory with index.js, a
  // package in node_modules), relative to the task root.
  return require(require.resolve(moduleName, { paths: [appRoot, moduleRoot] }));
}

async function loadHandler(appRoot, fullHandler) {
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(
      `'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  // 'src/app/index.handler' -> moduleRoot 'src/app/', 'index.handler'
  const moduleAndHandler = path.basename(fullHandler);
  const moduleRoot = fullHandler.slice(0, fullHandler.length - moduleAndHandler.length);
  const match = moduleAndHandler.match(/^([^.]*)\.(.*)$/);
  if (!match) throw new MalformedHandlerName('Bad handler');
  const [, moduleName, handlerPath] = match;

  let userModule;
  try {
    userModule = await loadModule(appRoot, moduleRoot, moduleName);
  } catch (err) {
    if (err instanceof SyntaxError) throw new UserCodeSyntaxError(err);
    if (err && (err.code === 'MODULE_NOT_FOUND' || err.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new ImportModuleError(err);
    }
    throw err;
  }
  // 'index.nested.handler' names a property path inside the module.
  const handler = handlerPath
    .split('.')
    .reduce((obj, key) => obj && obj[key], userModule);
  if (!handler) {
    throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  }
  if (typeof handler !== 'function') {
    throw new HandlerNotFound(`${fullHandler} is not a function`);
  }
  return handler;
}

// ---------------------------------------------------------------------------
// Invocation

const BINARY = (process.env.LAMBKIN_PAYLOAD_ENCODING || 'json').toLowerCase() === 'binary';

function decodeEvent(body) {
  if (BINARY) return body;
  const text = body.toString('utf8');
  // An empty body fails like in the real client (JSON.parse throws
  // "Unexpected end of JSON input").
  if (text.length === 0) return JSON.parse(text);
  try {
    return JSON.parse(text);
  } catch (_) {
    // Lambkin extension: non-JSON payloads reach the handler as a string.
    return text;
  }
}

function parseJsonHeader(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

/**
 * The one process-wide 'beforeExit' hook: it fires when the event loop has
 * nothing left to do, which is how `callbackWaitsForEmptyEventLoop` and
 * handlers that never answer are settled.
 */
let onEmptyEventLoop = null;
process.on('beforeExit', () => {
  const hook = onEmptyEventLoop;
  onEmptyEventLoop = null;
  if (hook) hook();
});

/** The invocation in flight, for uncaught exceptions and rejections. */
let inFlight = null;

class Runtime {
  constructor(api, handler) {
    this.api = api;
    this.handler = handler;
    this.handlerIsAsync =
      handler.constructor && handler.constructor.name === 'AsyncFunction';
  }

  scheduleNext() {
    setImmediate(() => this.handleOne().catch(fatal));
  }

  async handleOne() {
    const { headers, body } = await this.api.next();
    const id = headers['lambda-runtime-aws-request-id'];
    currentRequestId = id;
    const traceId = headers['lambda-runtime-trace-id'];
    if (traceId) process.env._X_AMZN_TRACE_ID = traceId;
    else delete process.env._X_AMZN_TRACE_ID;

    const invocation = new Invocation(this, id);
    inFlight = invocation;
    const { callback, context } = invocation;

    // A handler that neither returns a promise nor calls back is settled
    // once the event loop empties: null for a plain function, an error for
    // an async one whose promise never settled.
    onEmptyEventLoop = () => {
      if (this.handlerIsAsync) {
        const err = new NodeJsExit(
          'Runtime exited before the async handler settled its promise',
        );
        invocation.finish(err);
      } else {
        invocation.finish(null, null);
      }
    };

    try {
      const deadline = parseInt(headers['lambda-runtime-deadline-ms'], 10) || 0;
      Object.assign(context, {
        functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
        functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
        memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
        logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
        logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
        // Plain JSON (the Invoke API's base64 is already decoded by the
        // host), exposed as parsed: `{client, custom, env}` as sent.
        clientContext: parseJsonHeader(
          headers['lambda-runtime-client-context'],
          'ClientContext',
        ),
        identity: parseJsonHeader(
          headers['lambda-runtime-cognito-identity'],
          'CognitoIdentity',
        ),
        invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
        awsRequestId: id,
        tenantId: headers['lambda-runtime-aws-tenant-id'],
        getRemainingTimeInMillis: () => deadline - Date.now(),
      });
      const result = this.handler(decodeEvent(body), context, callback);
      if (result && typeof result.then === 'function') {
        result.then(context.succeed, context.fail);
      }
    } catch (err) {
      callback(err);
    }
  }
}

/**
 * The callback and the context's succeed/fail/done of one invocation. Only the
 * first of them to be called counts, as in the real client.
 */
class Invocation {
  constructor(runtime, id) {
    this.runtime = runtime;
    this.id = id;
    this.called = false; // a callback-style function was called
    this.finished = false; // the answer has been posted (or is being)
    let waitForEmptyEventLoop = true;
    const once = (fn) => (...args) => {
      if (this.called) return;
      this.called = true;
      fn(...args);
    };
    this.callback = once((err, result) => {
      if (err !== undefined && err !== null) {
        this.finish(err);
      } else if (!waitForEmptyEventLoop) {
        this.finish(null, result);
      } else {
        // Answer once the loop has drained (timers, sockets the handler left
        // running), as Lambda does by default for callback handlers.
        onEmptyEventLoop = () => setImmediate(() => this.finish(null, result));
      }
    });
    const done = once((err, result) => {
      if (err !== undefined && err !== null) this.finish(err);
      else this.finish(null, result);
    });
    this.context = {
      get callbackWaitsForEmptyEventLoop() {
        return waitForEmptyEventLoop;
      },
      set callbackWaitsForEmptyEventLoop(value) {
        waitForEmptyEventLoop = value;
      },
      done,
      succeed: (result) => done(null, result),
      fail: (err) => done(err === undefined || err === null ? 'handled' : err, null),
    };
  }

  /** Post the answer (error when `err` is set), then fetch the next event. */
  finish(err, result) {
    if (this.finished) return;
    this.finished = true;
    // A callback of this invocation called late must not touch the next one.
    this.called = true;
    if (onEmptyEventLoop) onEmptyEventLoop = null;
    if (inFlight === this) inFlight = null;
    const api = this.runtime.api;
    let posted;
    if (err !== undefined && err !== null) {
      logError('Invoke Error', err);
      posted = api.postError(this.id, err);
    } else if (Buffer.isBuffer(result)) {
      posted = api.postResponse(this.id, result, 'application/octet-stream');
    } else {
      let text;
      try {
        text = JSON.stringify(result === undefined ? null : result);
      } catch (_) {
        text = undefined;
      }
      if (text === undefined) {
        // The real client fails the invocation the same way.
        const failure = new Error('Unable to stringify response body');
        logError('Invoke Error', failure);
        posted = api.postError(this.id, failure);
      } else {
        posted = api.postResponse(this.id, Buffer.from(text), 'application/json');
      }
    }
    posted.then(() => this.runtime.scheduleNext(), fatal);
  }
}

// An exception or rejection nobody caught fails the invocation in flight and
// ends the process (exit 129 / 128, as the real client), since user state may
// be corrupt. The host then reports the exit and starts a fresh instance.
function installCrashHandlers(api) {
  const crash = (error, code) => {
    logError(code === 129 ? 'Uncaught Exception' : 'Unhandled Promise Rejection', error);
    const invocation = inFlight;
    if (invocation && !invocation.finished) {
      invocation.finished = true;
      api.postError(invocation.id, error).then(
        () => process.exit(code),
        () => process.exit(code),
      );
    } else {
      process.exit(code);
    }
  };
  process.on('uncaughtException', (err) => crash(err, 129));
  process.on('unhandledRejection', (reason) => {
    const err = new UnhandledPromiseRejection(
      isErrorLike(reason) ? `${reason.name}: ${reason.message}` : String(reason),
    );
    crash(err, 128);
  });
}

async function main() {
  patchConsole();
  const address = process.env.AWS_LAMBDA_RUNTIME_API;
  if (!address) {
    process.stderr.write('lambkin runtime: AWS_LAMBDA_RUNTIME_API is not set\n');
    process.exit(1);
  }
  const api = new RuntimeApi(address);
  const appRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const handlerName = process.env._HANDLER || process.argv[2] || '';

  let handler;
  try {
    handler = await loadHandler(appRoot, handlerName);
  } catch (err) {
    logError('Init Error', err);
    try {
      await api.postInitError(err);
    } catch (postErr) {
      process.stderr.write(`lambkin runtime: ${postErr.message}\n`);
    }
    process.exit(1);
  }
  installCrashHandlers(api);
  new Runtime(api, handler).scheduleNext();
}

main().catch(fatal);
