/**
 * The process: `node dist/src/server.js --address HOST:PORT`, with REDUCER_TARGET=sql|mongo
 * (default sql) choosing the projections. Prints `listening on HOST:PORT` on stdout once it
 * listens (port 0 picks a free port and the real one is printed), logs to stderr, and exits 0
 * on SIGTERM / SIGINT.
 */

import { parseArgs } from "node:util";

import { runServer } from "./common.js";
import { isTarget, TARGETS } from "./projections.js";

const USAGE = `usage: eventuous-sidecar [--address HOST:PORT]   (default 127.0.0.1:50051)
Environment: REDUCER_TARGET=${Object.keys(TARGETS).join("|")} (default sql).
`;

function usageError(message: string): never {
    process.stderr.write(`eventuous-sidecar: ${message}\n\n${USAGE}`);
    process.exit(2);
}

async function main(): Promise<void> {
    let address = "127.0.0.1:50051";
    try {
        const { values } = parseArgs({ options: { address: { type: "string" } }, strict: true });
        address = values.address ?? address;
    } catch (error) {
        usageError((error as Error).message);
    }
    const host = /^(.+):\d{1,5}$/.exec(address)?.[1] ?? usageError(`--address must be HOST:PORT, not '${address}'`);
    const target = process.env.REDUCER_TARGET ?? "sql";
    if (!isTarget(target)) {
        usageError(`REDUCER_TARGET=${target} is not a target; use one of ${Object.keys(TARGETS).join(", ")}`);
    }

    let started;
    try {
        started = await runServer(address, TARGETS[target]);
    } catch (error) {
        process.stderr.write(`eventuous-sidecar: ${(error as Error).message}\n`);
        process.exit(1);
    }
    const stop = (signal: string) => {
        console.error(`(server) ${signal}: stopping`);
        started.server.forceShutdown();
        process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    process.stdout.write(`listening on ${host}:${started.port}\n`);
    console.error(`(server) Projecting to ${target} on ${host}:${started.port}`);
}

void main();
