// What every driver of tests/interop/node shares: its arguments (one JSON object in argv[2]),
// how it ends (one JSON line on stdout, then the exit code), a deadline, and the test-only
// https.Agent that moves a connection the SDK makes to port 443 onto the test server's port
// (docs/sdk-clients.md#node-device-another-port-for-the-http-transport).
'use strict';

const https = require('https');

const args = JSON.parse(process.argv[2] || '{}');

function finish(line, code) {
  process.stdout.write(JSON.stringify(line) + '\n', () => process.exit(code));
}

const timeoutSeconds = args.timeoutSeconds || 60;
setTimeout(() => {
  finish({ ok: false, name: 'Timeout', message: `no outcome within ${timeoutSeconds} s` }, 2);
}, timeoutSeconds * 1000);

class PortAgent extends https.Agent {
  createConnection(options, callback) {
    return super.createConnection(Object.assign({}, options, { port: args.port }), callback);
  }
}

// An SDK error as a JSON object: its class, message, HTTP status and body (parsed when JSON),
// and for an AMQP error (rhea's, which the AMQP transports hand on as it came) its condition,
// with its description as the body.
function describe(err) {
  if (typeof err.condition === 'string') {
    return Object.assign(describe(Object.assign(new Error(err.description), {
      responseBody: err.description,
    })), { name: 'AmqpError', condition: err.condition });
  }
  const response = err.response || err.transportObject;
  let body = err.responseBody;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch (_) {
      // not JSON: keep the text
    }
  }
  return {
    ok: false,
    name: err.constructor ? err.constructor.name : String(err.name),
    message: err.message,
    statusCode: response && response.statusCode !== undefined ? response.statusCode : null,
    responseBody: body === undefined ? null : body,
  };
}

module.exports = { args, describe, finish, PortAgent };
