/* Bounded waiting for the tests: nothing here loops or waits unbounded. */
import type { Message } from '../src/index.js';

/** Reject if p takes longer than ms. */
export function within<T>(ms: number, p: Promise<T>, what = 'operation'):
    Promise<T> {
	let t: NodeJS.Timeout;
	return Promise.race([
		p.finally(() => clearTimeout(t)),
		new Promise<T>((_, rej) => {
			t = setTimeout(() => rej(new Error(`${what}: no result ` +
			    `within ${ms} ms`)), ms);
		}),
	]);
}

/** Poll cond every 10 ms until true; throw after ms. */
export async function until(cond: () => boolean | Promise<boolean>,
    ms: number, what = 'condition'): Promise<void> {
	const end = Date.now() + ms;
	while (!(await cond())) {
		if (Date.now() > end)
			throw new Error(`${what}: not met within ${ms} ms`);
		await new Promise((r) => setTimeout(r, 10));
	}
}

/** Next delivery from an iterator, within ms. */
export async function nextMsg(it: AsyncIterator<Message>, ms = 5000):
    Promise<Message> {
	const r = await within(ms, it.next(), 'next message');
	if (r.done)
		throw new Error('subscription ended');
	return r.value;
}

let n = 0;
/** A topic name no other test uses. */
export function topic(base: string): string {
	return `${base}.${process.pid}.${++n}`;
}
