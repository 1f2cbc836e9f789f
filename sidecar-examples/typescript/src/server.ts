/**
 * The gRPC side of the sidecar: serves `projection.Projection/Project` with @grpc/grpc-js and
 * answers every request of a stream, in the order received, with `reduce`; and serves
 * `projection.ProjectionInfo/Describe` with `describe`.
 *
 * It also owns the two things a process around a reducer must get right: backpressure (a
 * stream stops reading while its responses cannot be sent) and a clean stop. Stopping ends
 * every open stream with status OK after the answer being written, instead of waiting for the
 * gateway to hang up (it never does) or cutting answers off mid-message; the gateway then
 * sends the unanswered events again when it reconnects.
 */

import * as grpc from "@grpc/grpc-js";

import { describe } from "./describe.js";
import {
  ProjectionInfoService,
  ProjectionService,
  type ProjectionInfoServer,
  type ProjectionRequest,
  type ProjectionResponse,
  type ProjectionServer,
} from "./gen/projection.js";
import { log } from "./log.js";
import { reduce } from "./reduce.js";
import type { Target } from "./targets/index.js";

type ProjectCall = grpc.ServerDuplexStream<ProjectionRequest, ProjectionResponse>;

const SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.max_send_message_length": 64 * 1024 * 1024,
};

/** A started server; `stop` ends it. */
export interface RunningServer {
  /** The bound port (the real one when the address asked for port 0). */
  readonly port: number;
  /**
   * Ends the open streams cleanly, stops accepting connections, and resolves once the server
   * is down: at the latest after `graceMs`, when whatever is left is cut off.
   */
  stop(graceMs: number): Promise<void>;
}

/** Binds `address` (HOST:PORT; port 0 picks a free one) and starts serving the reducer. */
export async function startServer(address: string, target: Target): Promise<RunningServer> {
  const server = new grpc.Server(SERVER_OPTIONS);
  const open = new Set<() => void>();
  let stopping = false;

  const service: ProjectionServer = {
    project: (call) => {
      if (stopping) {
        call.end();
        return;
      }
      const end = serveStream(call, target, () => open.delete(end));
      open.add(end);
    },
  };
  server.addService(ProjectionService, service);
  const info: ProjectionInfoServer = {
    describe: (call, callback) => {
      log.info(`described to connector '${call.request.connector}'`);
      callback(null, describe(target));
    },
  };
  server.addService(ProjectionInfoService, info);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(new Error(`cannot listen on ${address}: ${error.message}`)) : resolve(bound),
    );
  });

  return {
    port,
    stop: (graceMs) => {
      stopping = true;
      for (const end of [...open]) {
        end();
      }
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log.warn(`streams still open after ${graceMs} ms: cutting them off`);
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

/**
 * Answers the requests of one stream as they arrive. Returns a function that ends the stream
 * (status OK) after the answer being written; `closed` runs once when the stream is over.
 */
function serveStream(call: ProjectCall, target: Target, closed: () => void): () => void {
  const peer = call.getPeer();
  let answered = 0;
  let done = false;
  const finish = (how: string) => {
    if (!done) {
      done = true;
      log.info(`stream from ${peer} ${how} after ${answered} events`);
      closed();
    }
  };
  const end = () => {
    if (!done) {
      call.pause();
      call.end();
      finish("ended by the reducer");
    }
  };

  log.info(`stream opened by ${peer}`);
  call.on("data", (request: ProjectionRequest) => {
    if (done) {
      return; // ended by stop(): the gateway resends what was not answered
    }
    const response = reduce(request, target);
    if (response.error) {
      log.warn(response.error.message);
    }
    answered += 1;
    if (!call.write(response)) {
      // The transport is full: read no further until it drains.
      call.pause();
      call.once("drain", () => call.resume());
    }
  });
  call.on("end", () => {
    if (!done) {
      call.end();
      finish("closed by the gateway");
    }
  });
  call.on("cancelled", () => finish("cancelled"));
  call.on("error", (error: Error) => {
    log.warn(`stream from ${peer}: ${error.message}`);
    finish("failed");
  });
  return end;
}
