/**
 * Logging to stderr, so stdout carries nothing but the `listening on HOST:PORT` line that
 * launchers (the gateway's tests, `projector-gateway demo --sidecar`) wait for.
 * The level comes from REDUCER_LOG_LEVEL (debug, info, warn, error; default info).
 */

export const LEVELS = ["debug", "info", "warn", "error"] as const;
export type Level = (typeof LEVELS)[number];

let threshold = LEVELS.indexOf("info");

/** Parses a level name (case-insensitive; `warning` means `warn`), or undefined. */
export function parseLevel(name: string): Level | undefined {
  const lower = name.toLowerCase();
  const level = lower === "warning" ? "warn" : lower;
  return (LEVELS as readonly string[]).includes(level) ? (level as Level) : undefined;
}

export function setLevel(level: Level): void {
  threshold = LEVELS.indexOf(level);
}

function write(level: Level, message: string): void {
  if (LEVELS.indexOf(level) >= threshold) {
    process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase()} reducer: ${message}\n`);
  }
}

export const log = {
  debug: (message: string) => write("debug", message),
  info: (message: string) => write("info", message),
  warn: (message: string) => write("warn", message),
  error: (message: string) => write("error", message),
};
