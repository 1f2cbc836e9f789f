/**
 * SQL projections, as Eventuous's SQL Server sidecar writes them: each handler returns the SQL
 * text, sent as `projection.Execute{sql}` (the gateway runs it on the SQL target when
 * `allow_raw_sql` is on, the default).
 *
 * Raw SQL built from event data is open to injection, so values go through `sqlText` and
 * `sqlNumber` here instead of being pasted between quotes as in Eventuous's sample. A sidecar
 * free to use this project's extensions would send `projection.Statement` with typed
 * parameters instead (see sidecar-examples/typescript).
 */

import { type AnyEventHandlerMap, wrapToAny } from "./common.js";
import { Execute } from "./compiled/projection.js";

export const execute = <T>(eventType: string, handler: (event: T) => string): AnyEventHandlerMap => {
    return { eventType, handler: (e: T) => wrapToAny(Execute.fromPartial({ sql: handler(e) })) };
};

/** A SQL string literal: `'...'` with every `'` doubled. Refuses anything but a string. */
export function sqlText(value: unknown): string {
    if (typeof value !== "string") {
        throw new Error(`expected a string, got ${JSON.stringify(value)}`);
    }
    return `'${value.replaceAll("'", "''")}'`;
}

/** A SQL number literal. Refuses anything but a finite number. */
export function sqlNumber(value: unknown): string {
    if (typeof value !== "number" || !Number.isFinite(value)) {
        throw new Error(`expected a number, got ${JSON.stringify(value)}`);
    }
    return String(value);
}
