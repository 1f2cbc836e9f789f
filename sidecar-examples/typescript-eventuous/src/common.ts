/**
 * The sidecar's plumbing, in the shape of Eventuous's connector sidecars (`common.ts` of
 * connector-sidecar-mongo and connector-sidecar-nodejs-sqlserver): a `Projector` is a list of
 * (event type, handler) pairs; `Project` answers each event that has a handler with one
 * `ProjectionResponse{eventId, operation}` and sends **nothing** for the others (it logs them
 * and skips them). The gateway copes with that silence when the connector says
 * `sidecar.answers: handled` (see the README).
 *
 * Only the Eventuous base messages are used: ProjectionRequest's fields 1-5 in,
 * ProjectionResponse's fields 1-3 out, and the operation packed in an `Any` whose type URL is
 * `/projection.<Name>`, the spelling Eventuous's Node.js sidecars use.
 */

import * as grpc from "@grpc/grpc-js";

import type { Any } from "./compiled/google/protobuf/any.js";
import {
    ProjectionResponse,
    ProjectionService,
    type ProjectionRequest,
    type ProjectionServer,
} from "./compiled/projection.js";
import { messageTypeRegistry, type UnknownMessage } from "./compiled/typeRegistry.js";

export interface EventHandler<T> {
    (event: T): Any;
}

interface EventHandlerMap<T> {
    eventType: string;
    handler: EventHandler<T>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyEventHandlerMap = EventHandlerMap<any>;

export type Projector = AnyEventHandlerMap[];

/** Packs an operation message (anything generated with `$type`) into an `Any`. */
export function wrapToAny(message: UnknownMessage): Any {
    const type = messageTypeRegistry.get(message.$type);
    if (type === undefined) {
        throw new Error(`no message type ${message.$type} in the registry`);
    }
    return {
        $type: "google.protobuf.Any",
        typeUrl: `/${message.$type}`,
        value: Buffer.from(type.encode(message).finish()),
    };
}

/** The response for `request`, or undefined when the projector has no handler for its type. */
export function project(
    projections: Map<string, EventHandler<unknown>>,
    request: ProjectionRequest,
): ProjectionResponse | undefined {
    const handler = projections.get(request.eventType);
    if (handler === undefined) {
        return undefined;
    }
    return ProjectionResponse.fromPartial({
        eventId: request.eventId,
        operation: handler(request.eventPayload ?? {}),
        metadata: {},
    });
}

export const getProjectionServer = (projector: Projector): ProjectionServer => {
    const projections = new Map(projector.map((obj) => [obj.eventType, obj.handler]));
    return {
        project(call: grpc.ServerDuplexStream<ProjectionRequest, ProjectionResponse>): void {
            let failed = false;
            call.on("data", (ctx: ProjectionRequest) => {
                if (failed) {
                    return; // requests already on their way when the stream failed
                }
                let result: ProjectionResponse | undefined;
                try {
                    result = project(projections, ctx);
                } catch (error) {
                    // A payload the handler cannot project: fail the stream (the gateway
                    // reconnects and sends the event again) rather than skip it silently.
                    const details = `event ${ctx.eventId} (${ctx.eventType}): ${(error as Error).message}`;
                    failed = true;
                    call.emit("error", { code: grpc.status.INTERNAL, details }); // ends the call with it
                    return;
                }
                if (result === undefined) {
                    console.error(`(server) No handler found for event: ${ctx.eventType}`);
                    return;
                }
                call.write(result);
            });
            call.on("end", () => call.end());
            call.on("error", (error: grpc.ServiceError) => console.error(`(server) Stream failed: ${error.details ?? error.message}`));
        },
    };
};

const getServer = (projector: Projector): grpc.Server => {
    const server = new grpc.Server();
    server.addService(ProjectionService, getProjectionServer(projector));
    return server;
};

/** Binds `host` (HOST:PORT; port 0 picks a free one), starts serving, returns the port. */
export const runServer = (host: string, projector: Projector): Promise<{ server: grpc.Server; port: number }> => {
    const server = getServer(projector);
    return new Promise((resolve, reject) => {
        server.bindAsync(host, grpc.ServerCredentials.createInsecure(), (err: Error | null, port: number) => {
            if (err) {
                reject(new Error(`cannot listen on ${host}: ${err.message}`));
            } else {
                resolve({ server, port });
            }
        });
    });
};
