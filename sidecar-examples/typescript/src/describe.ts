/**
 * What the sidecar tells the gateway about itself (`projection.ProjectionInfo/Describe`,
 * optional in the contract): the read model's name and logic version, the event types it
 * handles (the gateway then sends only those), and how to clear the read model when a new
 * version makes the gateway rebuild it (`sidecar.rebuild_on_new_version`).
 */

import { HANDLED_EVENT_TYPES } from "./bookings.js";
import type { DescribeResponse } from "./gen/projection.js";
import { pack } from "./operations.js";
import { MAPPINGS, type Target } from "./targets/index.js";

export const PROJECTION = "bookings";

/**
 * The version of the reducer's logic. Change it when what the reducer writes changes, and a
 * gateway configured with `rebuild_on_new_version` rebuilds the read model.
 */
export const PROJECTION_VERSION = "1";

export function describe(target: Target): DescribeResponse {
  return {
    projection: PROJECTION,
    version: PROJECTION_VERSION,
    eventTypes: [...HANDLED_EVENT_TYPES],
    resetOperations: MAPPINGS[target].reset().map(pack),
  };
}
