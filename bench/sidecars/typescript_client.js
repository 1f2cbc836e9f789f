#!/usr/bin/env node
/**
 * A minimal load client for a reducer sidecar, in TypeScript's runtime (Node.js, @grpc/grpc-js),
 * for bench/sidecars.sh: it feeds the sidecar the way the gateway does, with nothing else
 * around it, so the sidecar's own ceiling can be compared with its rate through the gateway.
 *
 *   node typescript_client.js --address 127.0.0.1:50051 --events events.jsonl [--partitions 8] [--window 256]
 *
 * - Reads the requests exported by export_log.py (the gateway's request fields, partition
 *   included) and encodes them all before the clock starts.
 * - Calls Describe like the gateway: when the sidecar declares event types, only those are
 *   sent (UNIMPLEMENTED: every event).
 * - Opens one bidirectional `Project` stream per partition (8 by default, as the gateway), all
 *   on one channel (one HTTP/2 connection, as the gateway), and keeps up to `--window`
 *   requests unanswered on each (256, the gateway's default), sending the next as each
 *   response arrives; checks that every response answers the oldest request in flight and
 *   carries no error.
 * - The clock runs from the first request written to the last response read. Prints
 *   per-second response counts on stderr and, last on stdout, `RESULT {json}` with `sent`,
 *   `log_events`, `started_at` (Unix time), `seconds`, `sent_per_s`, `log_events_per_s` and
 *   `per_second`.
 *
 * Plain JavaScript (no build step), using the TypeScript example's installed @grpc/grpc-js
 * and its generated stubs (scripts/typescript-sidecar.sh sets both up).
 */
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { createRequire } = require("node:module");
const { pathToFileURL } = require("node:url");
const { parseArgs } = require("node:util");

const EXAMPLE = path.resolve(__dirname, "../../sidecar-examples/typescript");
const grpc = createRequire(path.join(EXAMPLE, "package.json"))("@grpc/grpc-js");

const CHANNEL_OPTIONS = {
  "grpc.max_receive_message_length": 64 << 20,
  "grpc.max_send_message_length": 64 << 20,
};

/** The event types the sidecar's Describe declares, or undefined (UNIMPLEMENTED, or none). */
function describedTypes(gen, address) {
  const info = new gen.ProjectionInfoClient(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  return new Promise((resolve, reject) => {
    info.describe({ connector: "bench" }, { deadline: Date.now() + 30_000 }, (error, answer) => {
      info.close();
      if (error && error.code === grpc.status.UNIMPLEMENTED) {
        resolve(undefined);
      } else if (error) {
        reject(error);
      } else {
        resolve(answer.eventTypes.length > 0 ? new Set(answer.eventTypes) : undefined);
      }
    });
  });
}

/** Sends `requests` ([{ eventId, bytes }]) on one stream with `window` in flight; resolves to
 * the time (ms) of the last response. */
function feed(client, requests, window, answered, started) {
  return new Promise((resolve, reject) => {
    const call = client.project();
    let next = 0;
    let done = 0;
    let last = started;
    const send = () => {
      while (next < requests.length && next - done < window) {
        call.write(requests[next].bytes);
        next += 1;
      }
    };
    call.on("data", (response) => {
      const expected = requests[done];
      if (response.eventId !== expected.eventId) {
        reject(new Error(`response for ${response.eventId} where ${expected.eventId} was the oldest in flight`));
        return;
      }
      if (response.error) {
        reject(new Error(`the sidecar reported an error: ${response.error.message}`));
        return;
      }
      last = performance.now();
      const second = Math.floor((last - started) / 1000);
      answered[second] = (answered[second] ?? 0) + 1;
      done += 1;
      if (done === requests.length) {
        call.cancel();
        resolve(last);
      } else {
        send();
      }
    });
    call.on("error", (error) => {
      if (done < requests.length) {
        reject(error);
      }
    });
    send();
  });
}

async function main() {
  const { values } = parseArgs({
    options: {
      address: { type: "string" },
      events: { type: "string" },
      partitions: { type: "string", default: "8" },
      window: { type: "string", default: "256" },
    },
    strict: true,
  });
  if (!values.address || !values.events) {
    throw new Error("usage: typescript_client.js --address HOST:PORT --events events.jsonl [--partitions 8] [--window 256]");
  }
  const partitions = Number(values.partitions);
  const window = Number(values.window);
  const gen = await import(pathToFileURL(path.join(EXAMPLE, "dist/src/gen/projection.js")).href);

  const types = await describedTypes(gen, values.address);
  const perPartition = Array.from({ length: partitions }, () => []);
  let logEvents = 0;
  for (const line of fs.readFileSync(values.events, "utf8").split("\n")) {
    if (line === "") {
      continue;
    }
    logEvents += 1;
    const e = JSON.parse(line);
    if (types !== undefined && !types.has(e.eventType)) {
      continue;
    }
    const request = gen.ProjectionRequest.fromPartial({
      eventType: e.eventType,
      eventId: e.eventId,
      stream: e.stream,
      eventPayload: JSON.parse(e.data),
      metadata: e.metadata,
      globalPosition: BigInt(e.globalPosition),
      streamRevision: BigInt(e.streamRevision),
      created: new Date(Math.floor(e.createdUs / 1000)),
      partition: e.partition % partitions,
      contentType: "application/json",
    });
    const bytes = Buffer.from(gen.ProjectionRequest.encode(request).finish());
    perPartition[e.partition % partitions].push({ eventId: e.eventId, bytes });
  }
  const sent = perPartition.reduce((n, p) => n + p.length, 0);

  // The service with the requests already encoded: the clock covers no encoding.
  const service = { project: { ...gen.ProjectionService.project, requestSerialize: (bytes) => bytes } };
  const Client = grpc.makeGenericClientConstructor(service, "projection.Projection");
  const client = new Client(values.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  await new Promise((resolve, reject) =>
    client.waitForReady(Date.now() + 30_000, (error) => (error ? reject(error) : resolve())),
  );
  const answered = [];
  const startedAt = Date.now() / 1000;
  const started = performance.now();
  const lasts = await Promise.all(
    perPartition.filter((p) => p.length > 0).map((requests) => feed(client, requests, window, answered, started)),
  );
  const seconds = (Math.max(...lasts) - started) / 1000;
  client.close();
  const perSecond = Array.from({ length: Math.floor(seconds) + 1 }, (_, s) => answered[s] ?? 0);
  process.stderr.write(`typescript_client: responses per second: [${perSecond.join(", ")}]\n`);
  const result = {
    sent,
    log_events: logEvents,
    started_at: startedAt,
    seconds: Number(seconds.toFixed(4)),
    sent_per_s: Math.round(sent / seconds),
    log_events_per_s: Math.round(logEvents / seconds),
    per_second: perSecond,
    filtered_by_describe: types !== undefined,
  };
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

main().catch((error) => {
  process.stderr.write(`typescript_client: ${error.stack ?? error}\n`);
  process.exit(1);
});
