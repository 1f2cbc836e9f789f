/**
 * The library-loans reducer sidecar for projector-gateway: a gRPC server (@grpc/grpc-js) that
 * answers each event of a stream, in the order received, with the reducer's statements
 * (`projection.Projection/Project`), and serves `projection.ProjectionInfo/Describe`.
 *
 *   node dist/src/main.js     # listens on $REDUCER_ADDRESS (default 127.0.0.1:50051)
 *
 * Prints `listening on HOST:PORT` once ready, logs to stderr, stops on SIGTERM / SIGINT.
 */

import * as grpc from "@grpc/grpc-js";

import {
  ProjectionInfoService,
  ProjectionService,
  type ProjectionInfoServer,
  type ProjectionRequest,
  type ProjectionServer,
} from "./gen/projection.js";
import { describe, respond } from "./reducer.js";

const address = process.env.REDUCER_ADDRESS ?? "127.0.0.1:50051";

const projection: ProjectionServer = {
  // One stream per gateway partition: answer every request, in order, as it arrives.
  project: (call) => {
    call.on("data", (req: ProjectionRequest) => call.write(respond(req)));
    call.on("end", () => call.end());
    call.on("error", (error) => console.error(`stream error: ${error.message}`));
  },
};

const info: ProjectionInfoServer = {
  describe: (_call, callback) => callback(null, describe()),
};

const server = new grpc.Server();
server.addService(ProjectionService, projection);
server.addService(ProjectionInfoService, info);
server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    console.error(`cannot listen on ${address}: ${error.message}`);
    process.exit(1);
  }
  console.log(`listening on ${address.slice(0, address.lastIndexOf(":"))}:${port}`);
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  // Open streams are cut; the gateway sends unanswered events again when it reconnects.
  process.on(signal, () => {
    server.forceShutdown();
    process.exit(0);
  });
}
