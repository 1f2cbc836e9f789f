/**
 * The sidecar process: reads the command line and the environment, starts the server, prints
 * the one stdout line launchers wait for, and stops cleanly on SIGTERM / SIGINT (exit 0).
 *
 *   node dist/src/main.js --address 127.0.0.1:50051 [--grace 2]
 *
 * Environment: REDUCER_TARGET=sql|mongo|elastic (default sql), REDUCER_LOG_LEVEL
 * (debug, info, warn, error; default info).
 */

import { parseArgs } from "node:util";

import { log, parseLevel, setLevel } from "./log.js";
import { isTarget, TARGETS } from "./targets/index.js";
import { startServer } from "./server.js";

const DEFAULT_ADDRESS = "127.0.0.1:50051";

const USAGE = `usage: bookings-reducer [--address HOST:PORT] [--grace SECONDS]

The bookings example reducer sidecar for projector-gateway (sidecar-examples/BOOKINGS.md).

  --address HOST:PORT  where to listen (default ${DEFAULT_ADDRESS}; port 0 picks a free port)
  --grace SECONDS      on SIGTERM/SIGINT, how long open streams may take to end (default 2)

Environment: REDUCER_TARGET=${TARGETS.join("|")} (default sql), REDUCER_LOG_LEVEL=debug|info|warn|error.
`;

/** Ends the process with a one-line explanation (exit 2: the command line or env is wrong). */
function usageError(message: string): never {
  process.stderr.write(`bookings-reducer: ${message}\n\n${USAGE}`);
  process.exit(2);
}

/** HOST:PORT, with HOST possibly a bracketed IPv6 address. */
function splitAddress(address: string): { host: string; port: number } {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):(\d{1,5})$/.exec(address);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) {
    usageError(`--address must be HOST:PORT (e.g. 127.0.0.1:0), not '${address}'`);
  }
  return { host: match[1] as string, port };
}

async function main(): Promise<void> {
  let values: { address?: string; grace?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        address: { type: "string", default: DEFAULT_ADDRESS },
        grace: { type: "string", default: "2" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    usageError((error as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const address = values.address ?? DEFAULT_ADDRESS;
  const { host } = splitAddress(address);
  const grace = Number(values.grace);
  if (!Number.isFinite(grace) || grace < 0) {
    usageError(`--grace must be a number of seconds, not '${values.grace}'`);
  }

  const levelName = process.env.REDUCER_LOG_LEVEL ?? "info";
  const level = parseLevel(levelName);
  if (level === undefined) {
    usageError(`REDUCER_LOG_LEVEL=${levelName} is not a level; use debug, info, warn or error`);
  }
  setLevel(level);
  const target = process.env.REDUCER_TARGET ?? "sql";
  if (!isTarget(target)) {
    usageError(`REDUCER_TARGET=${target} is not a target; use one of ${TARGETS.join(", ")}`);
  }

  let server;
  try {
    server = await startServer(address, target);
  } catch (error) {
    process.stderr.write(`bookings-reducer: ${(error as Error).message}\n`);
    process.exit(1);
  }

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn(`${signal} again: exiting now`);
      process.exit(0);
    }
    stopping = true;
    log.info(`${signal}: stopping (grace ${grace} s)`);
    void server.stop(grace * 1000).then(() => {
      log.info("stopped");
      process.exit(0);
    });
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  process.stdout.write(`listening on ${host}:${server.port}\n`);
  log.info(`ready on ${host}:${server.port} (target ${target})`);
}

void main();
