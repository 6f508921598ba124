/*
 * Fire-and-forget vs confirmed publish. Fire-and-forget returns once the
 * frame is queued for the socket: fast, but a crash can lose it unseen.
 * A confirmed publish resolves with the message id once the broker has
 * stored it (on disk, with ferryd's default fsync=always).
 */
import { connect } from 'ferry-client';

const client = await connect({
	host: process.env.FERRY_HOST ?? '127.0.0.1',
	port: Number(process.env.FERRY_PORT ?? 4470),
	name: 'publish-example',
});
const topic = `example.publish.${process.pid}`;
const N = 1000;

let t0 = performance.now();
for (let i = 0; i < N; i++)
	await client.publish(topic, Buffer.from(`ff ${i}`), { confirm: false });
await client.ping();	/* one round trip: everything before it was read */
console.log(`fire-and-forget: ${N} sent in ${(performance.now() - t0).toFixed(0)} ms`);

t0 = performance.now();
const ids = await Promise.all(Array.from({ length: N }, (_, i) =>
    client.publish(topic, { n: i })));	/* JSON, pipelined */
console.log(`confirmed: ${ids.length} stored in ${(performance.now() - t0).toFixed(0)} ms, first id ${ids[0]}`);

const one = await client.publish(topic, Buffer.from('hello'), { id: 'greeting-1' });
const again = await client.publish(topic, Buffer.from('hello'), { id: 'greeting-1' });
console.log(`own id ${one}, republished: ${again} (a duplicate, stored once)`);

const row = (await client.stats(topic)).find((r) => !r.group);
console.log(`stored in ${topic}: ${row?.ready}`);
await client.delete(topic);
await client.close();
