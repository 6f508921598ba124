/*
 * Errors: one class per code of PROTOCOL.md section 7, plus the failures
 * the client finds itself (connection lost, timeout, a broker that breaks
 * the protocol). Every error is a FerryError with `code` (0 for the
 * client's own), `codeName` and `retryable` as the table says; unknown
 * codes are not retryable (section 6, ERR).
 */

export class FerryError extends Error {
	/** Wire code from PROTOCOL.md section 7; 0 for client-side errors. */
	readonly code: number;
	/** `E_...` name of the code, or a client-side name. */
	readonly codeName: string;
	/** The same request may succeed later, unchanged. */
	readonly retryable: boolean;
	/** Subscription concerned (ERR `sid`), if the broker named one. */
	sid?: bigint;

	constructor(message: string, code = 0, codeName = 'E_CLIENT',
	    retryable = false) {
		super(message);
		this.name = new.target.name;
		this.code = code;
		this.codeName = codeName;
		this.retryable = retryable;
	}
}

/* Code errors: the class says the code, so `instanceof` is the test. */
function codeClass(code: number, codeName: string, retryable: boolean) {
	return class extends FerryError {
		static readonly code = code;
		constructor(message: string) {
			super(message, code, codeName, retryable);
		}
	};
}

/** E_PROTO (1): the broker could not parse a frame we sent. */
export class ProtocolError extends codeClass(1, 'E_PROTO', false) {}
/** E_TOOBIG (2): a frame above the broker's max_frame. */
export class FrameTooBig extends codeClass(2, 'E_TOOBIG', false) {}
/** E_HANDSHAKE (3). */
export class HandshakeError extends codeClass(3, 'E_HANDSHAKE', false) {}
/** E_UNKNOWN_TYPE (4). */
export class UnknownType extends codeClass(4, 'E_UNKNOWN_TYPE', false) {}
/** E_BADNAME (5): invalid topic or group name. */
export class BadName extends codeClass(5, 'E_BADNAME', false) {}
/** E_BADARG (6): a field missing, of the wrong type or out of range. */
export class BadArgument extends codeClass(6, 'E_BADARG', false) {}
/** E_NOSUB (7): no such subscription on this connection. */
export class NoSubscription extends codeClass(7, 'E_NOSUB', false) {}
/** E_STALE (8): the lease is no longer valid; the work may be redone. */
export class StaleLease extends codeClass(8, 'E_STALE', false) {}
/** E_MSGSIZE (9): a body above max_msg. */
export class MessageTooBig extends codeClass(9, 'E_MSGSIZE', false) {}
/** E_NOTFOUND (10). */
export class NotFound extends codeClass(10, 'E_NOTFOUND', false) {}
/** E_LIMIT (11): a configured limit of the broker. */
export class LimitReached extends codeClass(11, 'E_LIMIT', false) {}
/** E_FULL (12): a group is at its limit; retry later (retryable). */
export class QueueFull extends codeClass(12, 'E_FULL', true) {}
/** E_DISK (13): the broker's journal cannot write (retryable). */
export class DiskError extends codeClass(13, 'E_DISK', true) {}
/** E_INTERNAL (14) (retryable). */
export class InternalError extends codeClass(14, 'E_INTERNAL', true) {}
/** E_DELETED (15): the subscription's group was deleted. */
export class SubscriptionDeleted extends codeClass(15, 'E_DELETED', false) {}
/** E_SHUTDOWN (16): the broker is shutting down (retryable). */
export class ShuttingDown extends codeClass(16, 'E_SHUTDOWN', true) {}
/** E_MODE (17): ACK/NACK/TOUCH on an at-most-once subscription. */
export class ModeError extends codeClass(17, 'E_MODE', false) {}
/** E_NOSUBSCRIBERS (18): mandatory publish, nobody listening (retryable). */
export class NoSubscribers extends codeClass(18, 'E_NOSUBSCRIBERS', true) {}
/** E_DENIED (19): login refused, or the user may not do this. */
export class Denied extends codeClass(19, 'E_DENIED', false) {}
/**
 * E_IDLE (20): the broker closed the connection after idle_timeout
 * without a frame from us (retryable: the client reconnects).
 */
export class IdleTimeout extends codeClass(20, 'E_IDLE', true) {}
/** E_SLOW (21): unsolicited, with sid: an ephemeral subscription's oldest
 * messages were dropped (it fell ephemeral_max_bytes behind). */
export class SlowConsumer extends codeClass(21, 'E_SLOW', false) {}

const byCode: Array<(new (m: string) => FerryError) | undefined> = [
	undefined, ProtocolError, FrameTooBig, HandshakeError, UnknownType,
	BadName, BadArgument, NoSubscription, StaleLease, MessageTooBig,
	NotFound, LimitReached, QueueFull, DiskError, InternalError,
	SubscriptionDeleted, ShuttingDown, ModeError, NoSubscribers, Denied,
	IdleTimeout, SlowConsumer,
];

/** The error for an ERR frame's code; unknown codes are not retryable. */
export function errorFromCode(code: number, msg: string): FerryError {
	const C = byCode[code];
	const text = msg || `broker error ${code}`;
	return C ? new C(text) : new FerryError(text, code, `E_${code}`, false);
}

/** The connection closed before the reply came: the outcome is unknown. */
export class ConnectionLost extends FerryError {
	constructor(message: string) {
		super(message, 0, 'E_CONNECTION', true);
	}
}

/** The client was closed by its user. */
export class ClientClosed extends FerryError {
	constructor(message = 'client closed') {
		super(message, 0, 'E_CLOSED', false);
	}
}

/** No reply (or no request-reply answer) within the time allowed. */
export class TimeoutError extends FerryError {
	constructor(message: string) {
		super(message, 0, 'E_TIMEOUT', true);
	}
}

/** The caller's AbortSignal fired. */
export class AbortError extends FerryError {
	constructor(message = 'aborted') {
		super(message, 0, 'E_ABORTED', false);
	}
}

/**
 * The broker sent something PROTOCOL.md does not allow: a frame length of
 * 0 or above the client's limit, a payload that is not one msgpack map, a
 * frame type a client does not receive, a connection closed inside a
 * frame. The client closes that connection: framing cannot be trusted.
 */
export class BrokerProtocolError extends FerryError {
	constructor(message: string) {
		super(message, 0, 'E_BROKER_PROTOCOL', false);
	}
}
