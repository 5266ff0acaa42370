// A Greengrass component written against the AWS IoT Device SDK v2 for Node, as any user
// would: subscribes to test/node, publishes JSON and binary there, reads, updates and watches
// its configuration, reports its state, tries a publish its accessControl does not allow,
// and writes what it saw to results.json in its work directory.
const fs = require('fs');
const { greengrasscoreipc } = require('aws-iot-device-sdk-v2');

async function main() {
  const results = { messages: [] };
  const client = greengrasscoreipc.createClient();
  await client.connect();

  const sub = client.subscribeToTopic({
    topic: 'test/node',
    receiveMode: greengrasscoreipc.model.ReceiveMode.RECEIVE_ALL_MESSAGES,
  });
  const twoMessages = new Promise((resolve) => {
    sub.on('message', (m) => {
      if (m.jsonMessage) {
        results.messages.push({ kind: 'json', message: m.jsonMessage.message, topic: m.jsonMessage.context.topic });
      } else if (m.binaryMessage) {
        const bytes = Buffer.from(m.binaryMessage.message);
        results.messages.push({ kind: 'binary', message: bytes.toString('base64'), topic: m.binaryMessage.context.topic });
      }
      if (results.messages.length === 2) resolve();
    });
  });
  await sub.activate();
  await client.publishToTopic({ topic: 'test/node', publishMessage: { jsonMessage: { message: { hello: 'node' } } } });
  await client.publishToTopic({ topic: 'test/node', publishMessage: { binaryMessage: { message: Buffer.from([0, 1, 255]) } } });
  await twoMessages;

  results.get = (await client.getConfiguration({ keyPath: ['nested'] })).value;
  const updates = client.subscribeToConfigurationUpdate({ keyPath: ['nested'] });
  const update = new Promise((resolve) => {
    updates.on('message', (e) => resolve(e.configurationUpdateEvent.keyPath));
  });
  await updates.activate();
  await client.updateConfiguration({ keyPath: ['nested'], timestamp: new Date(), valueToMerge: { n: 2 } });
  results.event = await update;
  results.after = (await client.getConfiguration({ keyPath: ['nested'] })).value;
  await client.updateState({ state: greengrasscoreipc.model.ReportedLifecycleState.RUNNING });
  results.state = 'ok';
  try {
    await client.publishToTopic({ topic: 'forbidden/x', publishMessage: { jsonMessage: { message: {} } } });
    results.denied = null;
  } catch (e) {
    results.denied = e.constructor.name;
    results.denied_message = e.serviceError ? e.serviceError.message : String(e);
  }
  fs.writeFileSync('results.json.new', JSON.stringify(results));
  fs.renameSync('results.json.new', 'results.json');
  setInterval(() => {}, 1 << 30);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
