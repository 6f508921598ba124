/*
 * Pub-sub fan-out: every group of a topic receives every message. Two
 * services, billing and shipping, each with its own group, both see all
 * order events.
 */
import { connect } from 'ferry-client';

const opts = {
	host: process.env.FERRY_HOST ?? '127.0.0.1',
	port: Number(process.env.FERRY_PORT ?? 4470),
};
const topic = `example.orders.${process.pid}`;
const EVENTS = 5;
const got: Record<string, string[]> = { billing: [], shipping: [] };

const client = await connect({ ...opts, name: 'fan-out-example' });
for (const group of Object.keys(got))
	await client.subscribe(topic, (msg) => {
		got[group].push(msg.json<{ order: string }>().order);
	}, { group });

for (let i = 1; i <= EVENTS; i++)
	await client.publish(topic, { order: `order-${i}` });

const end = Date.now() + 10000;
while (Object.values(got).some((l) => l.length < EVENTS) && Date.now() < end)
	await new Promise((r) => setTimeout(r, 20));
for (const [group, orders] of Object.entries(got))
	console.log(`${group} got ${orders.length}: ${orders.join(' ')}`);
await client.delete(topic);
await client.close();
process.exitCode = Object.values(got).every((l) => l.length === EVENTS) ? 0 : 1;
