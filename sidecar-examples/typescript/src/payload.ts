/**
 * Typed access to an event's JSON payload, whichever way the gateway sent it.
 *
 * The gateway sends the payload as a `google.protobuf.Struct` (`eventPayload`, decoded by the
 * generated code into a plain object whose numbers are doubles), as the raw JSON bytes
 * (`payloadJson`, connector option `payload: json`), or both. Reducers should not care: they
 * ask for a required text or integer field and get it, or a `PayloadError` that names the
 * field and what was wrong with it.
 */

import type { ProjectionRequest } from "./gen/projection.js";

/** The payload lacks a field the reducer needs, or the field has the wrong type. */
export class PayloadError extends Error {
  override name = "PayloadError";
}

type Json = { readonly [key: string]: unknown };

export class Payload {
  private constructor(private readonly fields: Json) {}

  /** The request's payload: the Struct when it has fields, else the parsed `payloadJson`. */
  static of(request: ProjectionRequest): Payload {
    const struct = request.eventPayload;
    if (struct !== undefined && Object.keys(struct).length > 0) {
      return new Payload(struct);
    }
    if (request.payloadJson.length === 0) {
      return new Payload({});
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(request.payloadJson.toString("utf8"));
    } catch (error) {
      throw new PayloadError(`payloadJson is not valid JSON (${(error as Error).message})`);
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new PayloadError("payloadJson is not a JSON object");
    }
    return new Payload(parsed as Json);
  }

  /** A required string field. */
  text(name: string): string {
    const value = this.required(name);
    if (typeof value !== "string") {
      throw new PayloadError(`payload field '${name}' is not a string (${describe(value)})`);
    }
    return value;
  }

  /**
   * A required integer field. JSON numbers reach the Struct as doubles, so a whole number is
   * accepted and anything else (a fraction, a string, NaN) is an error.
   */
  integer(name: string): number {
    const value = this.required(name);
    if (typeof value !== "number") {
      throw new PayloadError(`payload field '${name}' is not a number (${describe(value)})`);
    }
    if (!Number.isInteger(value)) {
      throw new PayloadError(`payload field '${name}' is not a whole number (${value})`);
    }
    return value;
  }

  private required(name: string): unknown {
    const value = Object.hasOwn(this.fields, name) ? this.fields[name] : undefined;
    if (value === undefined || value === null) {
      throw new PayloadError(`payload field '${name}' is missing`);
    }
    return value;
  }
}

function describe(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}
