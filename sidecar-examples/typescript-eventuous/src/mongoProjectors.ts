/**
 * MongoDB projections, as Eventuous's MongoDB sidecar writes them: handlers return the fields
 * of `projection.InsertOne{document}` or `projection.UpdateOne{filter, update}` as plain
 * objects (the generated code turns them into `google.protobuf.Struct`s). The operations act
 * on the connector's collection (`sink.mongo.collection`); numbers are doubles.
 */

import { type AnyEventHandlerMap, type EventHandler, wrapToAny } from "./common.js";
import { InsertOne, UpdateOne } from "./compiled/projection.js";

export function project<T>(eventType: string, handler: EventHandler<T>): AnyEventHandlerMap {
    return { eventType, handler: (x: unknown) => handler(x as T) };
}

export const insertOne = <T>(eventType: string, handler: (event: T) => { document: object }): AnyEventHandlerMap => {
    return project<T>(eventType, (e) => wrapToAny(InsertOne.fromPartial(handler(e))));
};

export const updateOne = <T>(
    eventType: string,
    handler: (event: T) => { filter: object; update: object },
): AnyEventHandlerMap => {
    return project<T>(eventType, (e) => wrapToAny(UpdateOne.fromPartial(handler(e))));
};
