// Registers one device with Microsoft's Node provisioning SDK over HTTPS, MQTT, AMQP or their
// WebSocket forms and prints the outcome as one JSON line; driven by
// tests/interop/test_node_device.py.
//
// usage: node register.js '<json>'
//   {"transport": "http" | "mqtt" | "mqttws" | "amqp" | "amqpws",   (default "http")
//    "port": 8443,                                     (http: the server's HTTPS port)
//    "mqttPort": 8883,                                 (mqtt: the server's MQTT over TLS port)
//    "amqpPort": 5671,                                 (amqp: the server's AMQP over TLS port)
//    "ca": "ca.pem", "idScope": "0ne...", "registrationId": "my-device",
//    "cert": "chain.pem", "key": "device.key"          (X.509: the PEM chain the device presents)
//    | "symmetricKey": "<base64 device key>",          (symmetric key: the derived device key)
//    "payload": {...}, "timeoutSeconds": 60,           (both optional)
//    "timeRegister": true}                             (optional: add "registerMs")
// prints {"ok": true, "result": <registrationState>} and exits 0, or
//        {"ok": false, "name": ..., "message": ..., "statusCode": ..., "result": ..., "responseBody": ...}
//        and exits 1; {"ok": false, "name": "Timeout", ...} and exit 2 when the SDK has not
//        finished within timeoutSeconds (default 60). With "timeRegister", the outcome line has
//        "registerMs" too: the milliseconds from the register() call to its callback, as a device
//        waits them (bench/sdk_latency.py).
//
// The SDK's HTTP transport always connects to port 443 and takes a host name only
// (docs/sdk-clients.md#node-device-http-transport); the agent below moves the connection to the
// test server's port. That agent is test-only
// (docs/sdk-clients.md#node-device-another-port-for-the-http-transport): a real device talks to
// 443. The MQTT transport takes "host:port" as it is; MqttWs always connects to
// wss://<host>:443/$iothub/websocket (docs/sdk-clients.md#node-device-mqtt-and-mqtt-over-websocket),
// so the server must listen on 443 for it. The AMQP transports take no CA option: they trust
// what Node trusts, so the test runs node with NODE_EXTRA_CA_CERTS naming the server's CA
// (docs/sdk-clients.md#node-device-amqp-and-amqp-over-websocket); Amqp takes "host:port",
// AmqpWs always connects to wss://<host>:443/$iothub/websocket.
'use strict';

const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http } = require('azure-iot-provisioning-device-http');
const { Mqtt, MqttWs } = require('azure-iot-provisioning-device-mqtt');
const { Amqp, AmqpWs } = require('azure-iot-provisioning-device-amqp');
const HttpBase = require('azure-iot-http-base').Http;
const { MqttBase } = require('azure-iot-mqtt-base');
const { X509Security } = require('azure-iot-security-x509');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

const { args, describe, finish, PortAgent } = require('./driver');

function security() {
  if (args.symmetricKey !== undefined) {
    return new SymmetricKeySecurityClient(args.registrationId, args.symmetricKey);
  }
  return new X509Security(args.registrationId, {
    cert: fs.readFileSync(args.cert, 'utf8'),
    key: fs.readFileSync(args.key, 'utf8'),
  });
}

function describeRefusal(err) {
  return Object.assign(describe(err), { result: err.result === undefined ? null : err.result });
}

// The host the SDK is given and its transport, trusting the server's CA.
function transport() {
  const ca = fs.readFileSync(args.ca, 'utf8');
  const kind = args.transport || 'http';
  if (kind === 'http') {
    const base = new HttpBase();
    base.setOptions({ ca, http: { agent: new PortAgent() } });
    return ['localhost', new Http(base)];
  }
  if (kind === 'amqp') {
    return [`localhost:${args.amqpPort}`, new Amqp()];
  }
  if (kind === 'amqpws') {
    return ['localhost', new AmqpWs()];
  }
  const base = new MqttBase();
  base.setOptions({ ca });
  if (kind === 'mqtt') {
    return [`localhost:${args.mqttPort}`, new Mqtt(base)];
  }
  if (kind === 'mqttws') {
    return ['localhost', new MqttWs(base)];
  }
  throw new Error(`unknown transport ${JSON.stringify(kind)}: http, mqtt, mqttws, amqp or amqpws`);
}

const [host, deviceTransport] = transport();
const client = ProvisioningDeviceClient.create(host, args.idScope, deviceTransport, security());
if (args.payload !== undefined) {
  client.setProvisioningPayload(args.payload);
}
// The register() call's duration, added to the outcome line when asked for.
function timed(line, started) {
  if (!args.timeRegister) {
    return line;
  }
  const registerMs = Number(process.hrtime.bigint() - started) / 1e6;
  return Object.assign(line, { registerMs });
}

const started = process.hrtime.bigint();
client.register((err, registrationState) => {
  if (err) {
    finish(timed(describeRefusal(err), started), 1);
  } else {
    finish(timed({ ok: true, result: registrationState }, started), 0);
  }
});
