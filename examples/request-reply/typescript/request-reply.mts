/*
 * Request-reply: the requester publishes with reply_to = its inbox and a
 * fresh correlation id, and waits for the matching reply up to a timeout.
 * The responder answers with msg.reply(), which copies the correlation id.
 */
import { connect, TimeoutError, NoSubscribers } from 'ferry-client';

const opts = {
	host: process.env.FERRY_HOST ?? '127.0.0.1',
	port: Number(process.env.FERRY_PORT ?? 4470),
};
const topic = `example.rpc.price.${process.pid}`;

const requester = await connect({ ...opts, name: 'requester' });
try {
	await requester.request(topic, { sku: 'A1' }, { timeout: 1000 });
} catch (e) {
	if (e instanceof NoSubscribers)
		console.log('no responder yet: failed at once (NoSubscribers)');
}

const responder = await connect({ ...opts, name: 'price-service' });
await responder.subscribe(topic, async (msg) => {
	const { sku } = msg.json<{ sku: string }>();
	if (sku === 'SLOW')
		return;	/* never answers */
	console.log(`responder: request ${msg.correlationId} for ${sku}`);
	await msg.reply({ sku, price: sku.length * 100 });
});

const reply = await requester.request(topic, { sku: 'A1' }, { timeout: 2000 });
console.log(`requester: reply ${reply.correlationId}: ${reply.text()}`);

const t0 = Date.now();
try {
	await requester.request(topic, { sku: 'SLOW' }, { timeout: 300 });
} catch (e) {
	if (e instanceof TimeoutError)
		console.log(`requester: no reply within 300 ms (waited ${Date.now() - t0 >= 290 ? '>=300' : '<300'} ms)`);
}
await responder.close();
await requester.close();
