/*
 * message.ts - a delivery (MSG, PROTOCOL.md section 6) and how to settle
 * it. A Message belongs to the connection that delivered it: after a
 * reconnect its lease is gone (section 1), and settling it fails with
 * StaleLease without asking the broker.
 */
import { type Payload, delivery, text } from './codec.js';
import { BrokerProtocolError } from './errors.js';

/** One failed attempt of a dead-lettered message (MSG `hist`). */
export interface HistoryEntry {
	cause: string;
	error: string;
	by: string;
	at: number;
}

/** What a Message needs from the client that delivered it. */
export interface Settler {
	ack(m: Message): Promise<void>;
	nack(m: Message, delay?: number, error?: string): Promise<void>;
	touch(m: Message): Promise<void>;
	reply(m: Message, data: unknown, opts?: ReplyOptions): Promise<string>;
}

export interface ReplyOptions {
	headers?: Record<string, string>;
}

export interface NackOptions {
	/** ms before redelivery; absent: the broker's exponential backoff. */
	delay?: number;
	/** Why it failed; kept in the message's history (1024 bytes). */
	error?: string;
}

function isUint(v: unknown): v is number | bigint {
	return typeof v === 'number' ? Number.isSafeInteger(v) && v >= 0 :
	    typeof v === 'bigint' && v >= 0n;
}

/*
 * The value, not the payload and a key: a load of p[k] with k varying
 * is megamorphic, a load of p.topic is not.
 */
function str(v: unknown, k: string): string {
	if (v === undefined || v === null)
		return '';
	if (typeof v !== 'string')
		throw new BrokerProtocolError(`MSG key ${k} is not a str`);
	return v;
}

function num(v: unknown, k: string): number {
	if (v === undefined || v === null)
		return 0;
	if (typeof v === 'bigint' && v >= 0n)
		return Number(v);
	if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
		throw new BrokerProtocolError(`MSG key ${k} is not a uint`);
	return v;
}

function strMap(v: unknown, k: string): Record<string, string> {
	if (v === undefined || v === null)
		return {};
	if (typeof v !== 'object' || Array.isArray(v))
		throw new BrokerProtocolError(`MSG key ${k} is not a map`);
	for (const x of Object.values(v as object))
		if (typeof x !== 'string')
			throw new BrokerProtocolError(`MSG key ${k}: a value is not a str`);
	return v as Record<string, string>;
}

/* What a message without headers or history holds: shared, frozen. */
const NO_HEADERS: Record<string, string> = Object.freeze({});
const NO_HISTORY: HistoryEntry[] = Object.freeze([]) as unknown as
    HistoryEntry[];

export class Message {
	readonly topic: string;
	/** Body bytes; a view of the received data, valid as long as kept. */
	readonly body: Buffer;
	/** Headers; frozen and shared ({}) when the message has none. */
	readonly headers: Record<string, string>;
	/** Attempt number: 1 on first delivery. */
	readonly attempt: number;
	/** Publish time, Unix ms. */
	readonly timestamp: number;
	/**
	 * @internal sid and lease as the wire had them: number below 2^53,
	 * bigint above (decodeFrame's form), what the client keys and
	 * encodes with; the bigint getters below are made on demand.
	 */
	readonly wireSid: number | bigint;
	/** @internal */
	readonly wireLease: number | bigint;
	readonly replyTo: string;
	readonly correlationId: string;
	/** Dead letters only: the failed attempts, oldest first. */
	readonly history: HistoryEntry[];	/* frozen [] if none */
	/** @internal connection generation that delivered it */
	readonly gen: number;
	/** Settled (acked or nacked) by this client. */
	settled = false;
	/*
	 * The id: a string, or undefined while it is still the bytes
	 * idSrc[idFrom..idTo) of the frame (readMsg's delivery), made a
	 * string on the first read of `id`. idSrc is the buffer body is a
	 * view of: keeping it keeps nothing more alive.
	 */
	private idText: string | undefined;
	private idSrc: Buffer | undefined;
	private idFrom: number;
	private idTo: number;

	/** @internal */
	constructor(p: Payload, gen: number, private settler: Settler) {
		const sid = p.sid;
		if (!isUint(sid))
			throw new BrokerProtocolError('MSG without a valid sid');
		/* only readMsg's: a MSG's own keys never name bytes to read */
		const src = p === delivery ? p.idSrc as Buffer | undefined :
		    undefined;
		if (src === undefined && typeof p.id !== 'string')
			throw new BrokerProtocolError('MSG without a valid id');
		const b = p.body;
		if (Buffer.isBuffer(b))
			this.body = b;
		else if (b instanceof Uint8Array)
			this.body = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
		else if (typeof b === 'string')
			this.body = Buffer.from(b);
		else
			throw new BrokerProtocolError('MSG without a valid body');
		const lease = p.lease === undefined || p.lease === null ? 0 :
		    p.lease;
		if (!isUint(lease))
			throw new BrokerProtocolError('MSG lease is not a uint');
		this.wireSid = sid;
		this.idText = src === undefined ? p.id as string : undefined;
		this.idSrc = src;
		this.idFrom = src === undefined ? 0 : p.idFrom as number;
		this.idTo = src === undefined ? 0 : p.idTo as number;
		this.wireLease = lease;
		this.topic = str(p.topic, 'topic');
		this.attempt = num(p.att, 'att');
		this.timestamp = num(p.ts, 'ts');
		/* {} only when there are headers: most messages have none */
		this.headers = p.hdr === undefined || p.hdr === null ? NO_HEADERS :
		    strMap(p.hdr, 'hdr');
		this.replyTo = str(p.reply_to, 'reply_to');
		this.correlationId = str(p.corr, 'corr');
		this.history = NO_HISTORY;
		if (p.hist !== undefined && p.hist !== null) {
			this.history = [];
			if (!Array.isArray(p.hist))
				throw new BrokerProtocolError('MSG hist is not an array');
			for (const h of p.hist as Payload[]) {
				if (!h || typeof h !== 'object')
					throw new BrokerProtocolError('MSG hist entry is not a map');
				this.history.push({ cause: str(h.c, 'c'), error: str(h.e, 'e'),
				    by: str(h.by, 'by'), at: num(h.at, 'at') });
			}
		}
		this.gen = gen;
	}

	/** Message id (broker UUID or the producer's own). */
	get id(): string {
		let s = this.idText;
		if (s === undefined) {
			s = this.idText = text(this.idSrc!, this.idFrom, this.idTo);
			this.idSrc = undefined;
		}
		return s;
	}

	/** Lease token (uint64, may exceed 2^53: hence bigint); 0n: none. */
	get lease(): bigint {
		return BigInt(this.wireLease);
	}

	/** Subscription id on the connection that delivered it. */
	get sid(): bigint {
		return BigInt(this.wireSid);
	}

	/** Body as UTF-8 text. */
	text(): string {
		return this.body.toString('utf8');
	}

	/** Body parsed as JSON. */
	json<T = unknown>(): T {
		return JSON.parse(this.body.toString('utf8')) as T;
	}

	/** Done: remove the message (a confirmed ACK: resolves once durable). */
	ack(): Promise<void> {
		return this.settler.ack(this);
	}

	/** Failed: requeue, after `delay` ms or the broker's backoff. */
	nack(opts: NackOptions = {}): Promise<void> {
		return this.settler.nack(this, opts.delay, opts.error);
	}

	/** Still working: the lease deadline becomes now + ack timeout. */
	touch(): Promise<void> {
		return this.settler.touch(this);
	}

	/** Publish a reply to `replyTo` with this message's correlation id. */
	reply(data: unknown, opts?: ReplyOptions): Promise<string> {
		return this.settler.reply(this, data, opts);
	}
}
