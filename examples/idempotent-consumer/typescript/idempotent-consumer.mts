/*
 * An idempotent consumer makes at-least-once act exactly-once. Delivery
 * may repeat (here: the worker "loses" its first ack of every third order,
 * so the lease runs out and the order comes back), so the consumer keys
 * its effect on the message id and skips ids it has already applied.
 * The producer sets the id (order-N), so a retried publish is also
 * recognised by the broker as a duplicate.
 */
import { connect } from 'ferry-client';

const opts = {
	host: process.env.FERRY_HOST ?? '127.0.0.1',
	port: Number(process.env.FERRY_PORT ?? 4470),
};
const topic = `example.payments.${process.pid}`;
const ORDERS = 9;

/* The consumer's own store: in real life a table with a unique key,
 * updated in the same transaction as the effect. */
const applied = new Set<string>();
let balance = 0, deliveries = 0, skipped = 0;

const client = await connect({ ...opts, name: 'payments' });
const sub = client.messages(topic, { ackTimeout: 300 });
await sub.ready;

for (let n = 1; n <= ORDERS; n++)
	await client.publish(topic, { amount: 10 }, { id: `order-${n}` });
/* the producer retries one publish: the broker stores it once */
await client.publish(topic, { amount: 10 }, { id: 'order-1' });

const watchdog = setTimeout(() => {
	console.error('timed out');
	process.exit(1);
}, 15000);
for await (const msg of sub) {
	deliveries++;
	if (applied.has(msg.id)) {
		skipped++;	/* seen: the effect is already there */
		await msg.ack();
	} else {
		balance += msg.json<{ amount: number }>().amount;
		applied.add(msg.id);
		const n = Number(msg.id.split('-')[1]);
		if (n % 3 === 0 && msg.attempt === 1)
			console.log(`${msg.id}: applied, ack lost (will come back)`);
		else
			await msg.ack();
	}
	if (applied.size === ORDERS && skipped === 3)
		break;
}
clearTimeout(watchdog);
console.log(`deliveries: ${deliveries}, duplicates skipped: ${skipped}`);
console.log(`orders applied: ${applied.size}, balance: ${balance} (expected ${ORDERS * 10})`);
await client.delete(topic);
await client.close();
process.exitCode = balance === ORDERS * 10 ? 0 : 1;
