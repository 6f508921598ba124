/*
 * subscription.ts - one SUB the client keeps alive across reconnects.
 * Deliveries go either to a handler (settled from its outcome) or to a
 * queue read with `for await`. The broker-side sid changes with every
 * connection; the Subscription object stays.
 */
import type { Message } from './message.js';
import { ClientClosed } from './errors.js';

export type Mode = 'at-least-once' | 'at-most-once';

export interface SubscribeOptions {
	/** Group to join; absent: the topic's `default` group. */
	group?: string;
	/** Most unacknowledged deliveries outstanding (broker default 16). */
	prefetch?: number;
	/** Lease in ms; also sets the group's value if this SUB creates it. */
	ackTimeout?: number;
	/** 'at-least-once' (default: explicit ack) or 'at-most-once'. */
	mode?: Mode;
	/** A private group that disappears with the subscription. */
	ephemeral?: boolean;
	/** Group settings, applied only by the SUB that creates the group. */
	maxAttempts?: number;
	ttl?: number;
	ttlDrop?: boolean;
	maxMsgs?: number;
	maxBytes?: number;
	overflow?: 'reject' | 'dead-letter';
}

export type Handler = (msg: Message) => unknown | Promise<unknown>;

/** What a Subscription needs from its client. */
export interface SubOwner {
	unsubscribe(sub: Subscription): Promise<void>;
	settleFromHandler(sub: Subscription, msg: Message, err: unknown): void;
	touchFromHandler(msg: Message): void;
	connectionGen(): number;
}

export class Subscription implements AsyncIterable<Message> {
	/** Broker-assigned id on the current connection (0n while none). */
	sid = 0n;
	/** Group joined (`default`, the given name, or `~...` if ephemeral). */
	group = '';
	closed = false;
	/** Why the subscription ended, if not by unsubscribe(). */
	error: Error | null = null;

	private queue: Message[] = [];
	private waiters: Array<{
		resolve: (r: IteratorResult<Message>) => void;
		reject: (e: Error) => void;
	}> = [];
	/* Handler deliveries in progress: when each was last (re)leased. */
	private running = new Map<Message, number>();
	private touchTimer: NodeJS.Timeout | null = null;
	private readyResolve!: () => void;
	private readyReject!: (e: Error) => void;
	private isReady = false;
	/** Settles with the first SUB's OK (or its error). */
	readonly ready: Promise<void>;

	/** @internal */
	constructor(private owner: SubOwner, readonly topic: string,
	    readonly options: SubscribeOptions, private handler?: Handler) {
		this.ready = new Promise((res, rej) => {
			this.readyResolve = res;
			this.readyReject = rej;
		});
		this.ready.catch(() => {});	/* read through next() or subscribe() */
	}

	get mode(): Mode {
		return this.options.mode ?? 'at-least-once';
	}

	/** @internal the SUB was answered OK on the current connection. */
	subscribed(sid: bigint, group: string): void {
		this.sid = sid;
		this.group = group;
		if (!this.isReady) {
			this.isReady = true;
			this.readyResolve();
		}
		if (this.handler && this.mode === 'at-least-once' && !this.touchTimer) {
			/*
			 * Auto-touch: a handler running past half its lease gets a
			 * TOUCH. Without ackTimeout the group's lease is not known
			 * (the SUB's OK does not tell it), so touch every 5 s.
			 */
			const half = this.options.ackTimeout ?
			    this.options.ackTimeout / 2 : 5000;
			this.touchTimer = setInterval(() => this.touchSlow(half),
			    Math.max(10, half / 4));
			this.touchTimer.unref();
		}
	}

	private touchSlow(half: number): void {
		const now = Date.now();
		for (const [m, since] of this.running) {
			if (now - since >= half) {
				this.running.set(m, now);
				this.owner.touchFromHandler(m);
			}
		}
	}

	/** @internal a delivery for this subscription. */
	deliver(msg: Message): void {
		if (this.closed)
			return;
		if (this.handler) {
			let r: unknown;
			try {
				r = this.handler(msg);
			} catch (e) {
				this.owner.settleFromHandler(this, msg, e ?? new Error('handler threw'));
				return;
			}
			if (!r || typeof (r as Promise<unknown>).then !== 'function') {
				this.owner.settleFromHandler(this, msg, null);
				return;
			}
			/* still running: auto-touch watches it */
			this.running.set(msg, Date.now());
			(r as Promise<unknown>).then(() => {
				this.running.delete(msg);
				this.owner.settleFromHandler(this, msg, null);
			}, (e: unknown) => {
				this.running.delete(msg);
				this.owner.settleFromHandler(this, msg,
				    e ?? new Error('handler rejected'));
			});
			return;
		}
		const w = this.waiters.shift();
		if (w)
			w.resolve({ value: msg, done: false });
		else
			this.queue.push(msg);
	}

	/** @internal the connection dropped: its deliveries are void. */
	disconnected(): void {
		this.sid = 0n;
		this.queue = [];	/* the broker puts them back */
		this.running.clear();
	}

	/** @internal the SUB failed for good, or the group was deleted. */
	fail(err: Error): void {
		if (!this.isReady) {
			this.isReady = true;
			this.readyReject(err);
		}
		this.error = err;
		this.end();
	}

	/** @internal stop: wake every reader. */
	end(): void {
		if (this.closed)
			return;
		this.closed = true;
		if (this.touchTimer)
			clearInterval(this.touchTimer);
		this.touchTimer = null;
		if (!this.isReady) {
			this.isReady = true;
			this.readyReject(this.error ?? new ClientClosed('subscription ended'));
		}
		this.queue = [];
		for (const w of this.waiters.splice(0)) {
			if (this.error)
				w.reject(this.error);
			else
				w.resolve({ value: undefined, done: true });
		}
	}

	/** End the subscription; its unacknowledged deliveries are released. */
	unsubscribe(): Promise<void> {
		return this.owner.unsubscribe(this);
	}

	/** Next delivery, for the iterator. */
	async next(): Promise<IteratorResult<Message>> {
		await this.ready;
		for (;;) {
			const m = this.queue.shift();
			if (!m)
				break;
			if (m.gen === this.owner.connectionGen())
				return { value: m, done: false };
		}
		if (this.closed) {
			if (this.error)
				throw this.error;
			return { value: undefined, done: true };
		}
		return new Promise((resolve, reject) => {
			this.waiters.push({ resolve, reject });
		});
	}

	[Symbol.asyncIterator](): AsyncIterator<Message> {
		return {
			next: () => this.next(),
			return: async () => {
				await this.unsubscribe();
				return { value: undefined, done: true };
			},
		};
	}
}
