export { connect, Client } from './client.js';
export type {
	ConnectOptions, ReconnectOptions, PublishOptions, BatchItem,
	BatchOptions, RequestOptions, Welcome,
} from './client.js';
export { Message } from './message.js';
export type { NackOptions, ReplyOptions, HistoryEntry } from './message.js';
export { Subscription } from './subscription.js';
export type { SubscribeOptions, Handler, Mode } from './subscription.js';
export * from './errors.js';
export {
	T as FrameType, encodeFrame, encodePayload, decodePayload, FrameReader,
	FrameWriter, uint64,
} from './codec.js';
