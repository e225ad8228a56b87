// Calls Microsoft's Node provisioning service SDK (azure-iot-provisioning-service) against a
// devprov server and prints the outcome of every call as one JSON line; driven by
// tests/interop/test_node_service.py.
//
// usage: node service.js '<json>'
//   {"host": "localhost", "port": 8443, "ca": "ca.pem",
//    "policy": "provisioningserviceowner", "key": "<base64 policy key>",
//    "calls": [{"method": "createOrUpdateEnrollmentGroup", "args": [{...}]},
//              {"method": "createEnrollmentGroupQuery", "args": [{"query": "*"}, 2]}, ...],
//    "timeoutSeconds": 60}
// prints {"results": [<one per call>]} and exits 0, each result
//   {"ok": true, "result": <responseBody>, "statusCode": 200}, or for a query method (which
//   the driver runs page by page until the SDK says there are no more results)
//   {"ok": true, "pages": [{"items": [...], "continuation": ..., "itemType": ...,
//    "maxItemCount": ...}]}, or
//   {"ok": false, "name": ..., "message": ..., "statusCode": ..., "responseBody": ...};
// or {"ok": false, "name": "Timeout", ...} and exit 2 when the calls have not finished within
// timeoutSeconds.
//
// The client is built as ProvisioningServiceClient.fromConnectionString builds it from
// "HostName=<host>;SharedAccessKeyName=<policy>;SharedAccessKey=<key>", the connection string
// devprov info prints for a server on port 443 (the SDK connects to 443 and puts HostName into a
// DNS lookup as it is). The one difference is test-only: its RestApiClient goes through an
// https.Agent that moves the connection to the test server's port and trusts the server CA.
'use strict';

const fs = require('fs');
const path = require('path');
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');

// The SDK's own copies of its dependencies, not the device SDK's older ones beside them.
const serviceDir = path.dirname(require.resolve('azure-iot-provisioning-service/package.json'));
const fromService = (name) => require(require.resolve(name, { paths: [serviceDir] }));
const { RestApiClient, Http } = fromService('azure-iot-http-base');
const { ConnectionString, SharedAccessSignature } = fromService('azure-iot-common');
const packageJson = require(path.join(serviceDir, 'package.json'));

const QUERIES = new Set([
  'createIndividualEnrollmentQuery',
  'createEnrollmentGroupQuery',
  'createEnrollmentGroupDeviceRegistrationStateQuery',
]);
const MAX_PAGES = 100; // a server that never stops answering with a continuation fails the test

const { args, describe, finish, PortAgent } = require('./driver');

function client() {
  const connectionString =
    `HostName=${args.host};SharedAccessKeyName=${args.policy};SharedAccessKey=${args.key}`;
  const cn = ConnectionString.parse(connectionString, ['HostName', 'SharedAccessKeyName', 'SharedAccessKey']);
  const config = {
    host: cn.HostName,
    sharedAccessSignature: SharedAccessSignature.create(cn.HostName, cn.SharedAccessKeyName, cn.SharedAccessKey, Date.now()),
    tokenCredential: undefined,
  };
  const http = new Http();
  http.setOptions({ ca: fs.readFileSync(args.ca, 'utf8'), http: { agent: new PortAgent() } });
  const rest = new RestApiClient(config, packageJson.name + '/' + packageJson.version, http);
  return new ProvisioningServiceClient(config, rest);
}


async function runQuery(query) {
  const pages = [];
  while (query.hasMoreResults) {
    if (pages.length >= MAX_PAGES) {
      throw new Error(`still more results after ${MAX_PAGES} pages`);
    }
    // The callback form, as the SDK's query sample uses it: it sends the continuation the last
    // page returned. (The promise form, next() without arguments, sends none and so asks for the
    // first page again, for ever.)
    const page = await new Promise((resolve, reject) => {
      query.next((err, items, response) => (err ? reject(err) : resolve({ items, response })));
    });
    const headers = page.response.headers;
    pages.push({
      items: page.items,
      continuation: headers['x-ms-continuation'] || null,
      itemType: headers['x-ms-item-type'] || null,
      maxItemCount: headers['x-ms-max-item-count'] || null,
    });
  }
  return { ok: true, pages };
}

async function call(service, { method, args: callArgs }) {
  if (typeof service[method] !== 'function') {
    return { ok: false, name: 'UnknownMethod', message: `no method ${method}` };
  }
  try {
    if (QUERIES.has(method)) {
      return await runQuery(service[method](...(callArgs || [])));
    }
    // Callbacks, not promises: in 1.11.2 the promise of runBulkEnrollmentOperation never
    // settles (its inner callback tests the caller's callback, which the promise form lacks).
    const answer = await new Promise((resolve, reject) => {
      service[method](...(callArgs || []), (err, result, response) =>
        err ? reject(err) : resolve({ result, response }));
    });
    return {
      ok: true,
      result: answer.result === undefined ? null : answer.result,
      statusCode: answer.response ? answer.response.statusCode : null,
    };
  } catch (err) {
    return describe(err);
  }
}

(async () => {
  const service = client();
  const results = [];
  for (const each of args.calls || []) {
    results.push(await call(service, each));
  }
  finish({ results }, 0);
})().catch((err) => finish(describe(err), 1));
