/*
 * Conformance fixture: a plain Node.js handler, as an ES module (index.mjs).
 *
 * Event protocol shared by every fixture (see tests/functions/README.md):
 *   {"action": "echo", ...} or no action  -> the event unchanged
 *   {"action": "error", "message": M}     -> throw FixtureError(M)
 *   {"action": "sleep", "seconds": N}     -> sleep N seconds, return {"slept": N}
 *   {"action": "crash", "code": N}        -> exit the process with status N
 *   {"action": "context"}                 -> client context, function name, remaining time
 *   {"action": "log", "message": M}       -> print M to stdout, return {"logged": true}
 */

class FixtureError extends Error {
  constructor(message) {
    super(message);
    this.name = 'FixtureError';
  }
}

function fixtureEnv() {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('FIXTURE_')) env[key] = value;
  }
  return env;
}

export const handler = async (event, context) => {
  const action = event && typeof event === 'object' && event.action ? event.action : 'echo';
  switch (action) {
    case 'error':
      throw new FixtureError(event.message === undefined ? 'error' : event.message);
    case 'sleep': {
      const seconds = Number(event.seconds || 0);
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      return { slept: event.seconds || 0 };
    }
    case 'crash':
      process.exit(Number(event.code === undefined ? 1 : event.code));
      break;
    case 'context':
      return {
        client_context: context.clientContext === undefined ? null : context.clientContext,
        function_name: context.functionName,
        remaining_ms: context.getRemainingTimeInMillis(),
        request_id: context.awsRequestId,
        env: fixtureEnv(),
      };
    case 'log':
      process.stdout.write(String(event.message === undefined ? '' : event.message) + '\n');
      return { logged: true };
    default:
      return event;
  }
};
