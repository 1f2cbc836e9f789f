/**
 * The operations a reducer can answer with, as typed values, and their packing into
 * `google.protobuf.Any` for the wire.
 *
 * Target mappings build `Operation`s (a message and the name of its type) and never touch
 * bytes or type URLs; `pack` is the one place that encodes them, so a mapping cannot pair a
 * message with the wrong type name.
 */

import type { Any } from "./gen/google/protobuf/any.js";
import {
  Delete,
  DeleteMany,
  Ignore,
  Index,
  Statement,
  Update,
  UpdateOne,
  type MessageFns,
  type SqlValue,
} from "./gen/projection.js";

/** The proto messages this reducer emits, by their name in package `projection`. */
const MESSAGES = { Statement, UpdateOne, DeleteMany, Index, Update, Delete, Ignore } as const;

type Messages = typeof MESSAGES;
type MessageOf<F> = F extends MessageFns<infer T> ? T : never;

/** One operation: `{ type: "Statement", message: { sql, params } }` and so on. */
export type Operation = {
  [K in keyof Messages]: { type: K; message: MessageOf<Messages[K]> };
}[keyof Messages];

/** The prefix most gRPC libraries use; the gateway reads the name after the last `/`. */
const TYPE_URL_PREFIX = "type.googleapis.com/projection.";

/** Encodes an operation as the `Any` a ProjectionResponse carries. */
export function pack(operation: Operation): Any {
  const codec = MESSAGES[operation.type] as MessageFns<typeof operation.message>;
  return {
    typeUrl: TYPE_URL_PREFIX + operation.type,
    value: Buffer.from(codec.encode(operation.message).finish()),
  };
}

/** The answer for an event that changes nothing. */
export const IGNORE: Operation = { type: "Ignore", message: {} };

// --- SQL ---------------------------------------------------------------------------------

/** A statement with positional `$1, $2, ...` parameters, bound by the gateway's driver. */
export function statement(sql: string, ...params: SqlValue[]): Operation {
  return { type: "Statement", message: Statement.fromPartial({ sql, params }) };
}

/** A text parameter (`stringValue`). */
export function text(value: string): SqlValue {
  return { kind: { $case: "stringValue", value } };
}

/** An integer parameter (`int64Value`); payload numbers arrive as whole doubles. */
export function int64(value: number | bigint): SqlValue {
  return { kind: { $case: "int64Value", value: BigInt(value) } };
}

// --- MongoDB -----------------------------------------------------------------------------

/** A JSON-like document; numbers travel as doubles in a `google.protobuf.Struct`. */
export type Document = { [key: string]: unknown };

/**
 * Updates the document of `collection` matching `filter`, inserting it when none does (upsert).
 * `integerFields` names the numbers the sink stores as Int64 rather than doubles.
 */
export function updateOne(
  collection: string,
  filter: Document,
  update: Document,
  integerFields: string[] = [],
): Operation {
  // fromPartial: fields added to the proto later (additive) take their defaults.
  return { type: "UpdateOne", message: UpdateOne.fromPartial({ collection, filter, update, integerFields }) };
}

/** Deletes every document of `collection` matching `filter` (`{}`: all of them). */
export function deleteMany(collection: string, filter: Document): Operation {
  return { type: "DeleteMany", message: DeleteMany.fromPartial({ collection, filter }) };
}

// --- Elasticsearch (the connector's index) -----------------------------------------------

/** Creates or replaces the document with this id. */
export function index(id: string, document: Document): Operation {
  return { type: "Index", message: Index.fromPartial({ id, document }) };
}

/** Merges `document` into the existing document with this id. */
export function update(id: string, document: Document): Operation {
  return { type: "Update", message: Update.fromPartial({ id, document }) };
}

/** Deletes the document with this id. */
export function remove(id: string): Operation {
  return { type: "Delete", message: Delete.fromPartial({ id }) };
}
