/**
 * The targets a reducer can emit operations for, chosen by REDUCER_TARGET, and for each one
 * how a domain event becomes operations and what clears the read model for a rebuild.
 */

import type { BookingEvent } from "../bookings.js";
import type { ProjectionRequest } from "../gen/projection.js";
import type { Operation } from "../operations.js";
import { elasticReset, toElastic } from "./elastic.js";
import { mongoReset, toMongo } from "./mongo.js";
import { sqlReset, toSql } from "./sql.js";

export const TARGETS = ["sql", "mongo", "elastic"] as const;
export type Target = (typeof TARGETS)[number];

export function isTarget(value: string): value is Target {
  return (TARGETS as readonly string[]).includes(value);
}

export interface TargetMapping {
  /** The operations for one event, in the order they must be applied. */
  operations(event: BookingEvent, request: ProjectionRequest): Operation[];
  /** The operations that clear the read model before a rebuild. */
  reset(): Operation[];
}

export const MAPPINGS: Record<Target, TargetMapping> = {
  sql: { operations: (event, request) => toSql(event, request.globalPosition), reset: sqlReset },
  mongo: { operations: (event, request) => toMongo(event, request.globalPosition), reset: mongoReset },
  elastic: {
    operations: (event, request) => toElastic(event, request.globalPosition, request.eventId),
    reset: elasticReset,
  },
};
