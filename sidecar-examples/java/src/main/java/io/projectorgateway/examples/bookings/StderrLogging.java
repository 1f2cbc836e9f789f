package io.projectorgateway.examples.bookings;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.time.temporal.ChronoUnit;
import java.util.Locale;
import java.util.logging.ConsoleHandler;
import java.util.logging.Formatter;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

/**
 * Logging for the sidecar process: java.util.logging, one line per record, on stderr.
 *
 * <p>stdout is reserved for the single {@code listening on HOST:PORT} line that launchers wait
 * for, so nothing else may ever print there; JUL's console handler writes to stderr, and the
 * JDK's default two-line format is replaced by a one-line one that is easy to grep and to follow
 * next to the gateway's log. java.util.logging rather than a logging library keeps the jar's
 * dependencies to gRPC and protobuf, and it is what grpc-java itself logs through.
 */
final class StderrLogging {
  /** The parent of this sidecar's loggers; held here because JUL keeps loggers weakly. */
  private static final Logger OWN_LOGGERS = Logger.getLogger(StderrLogging.class.getPackageName());

  private StderrLogging() {}

  /**
   * One line per record on stderr, at {@code REDUCER_LOG_LEVEL} for this sidecar's own loggers;
   * gRPC's and Netty's stay at INFO, as their debug output is rarely what one is after.
   */
  static void configure(String levelName) {
    Level level = switch (levelName == null ? "INFO" : levelName.trim().toUpperCase(Locale.ROOT)) {
      case "DEBUG" -> Level.FINE;
      case "INFO", "" -> Level.INFO;
      case "WARNING", "WARN" -> Level.WARNING;
      case "ERROR" -> Level.SEVERE;
      default -> throw new IllegalArgumentException("REDUCER_LOG_LEVEL=" + levelName
          + " is not a level; use DEBUG, INFO, WARNING or ERROR");
    };
    Logger root = Logger.getLogger("");
    for (Handler handler : root.getHandlers()) {
      root.removeHandler(handler);
    }
    Handler stderr = new ConsoleHandler(); // writes to System.err
    stderr.setFormatter(new OneLineFormatter());
    stderr.setLevel(Level.ALL);
    root.addHandler(stderr);
    root.setLevel(Level.INFO);
    OWN_LOGGERS.setLevel(level);
  }

  /** {@code 2026-01-31T12:00:00.123Z INFO Reducer: message}, then the stack trace if any. */
  private static final class OneLineFormatter extends Formatter {
    @Override
    public String format(LogRecord record) {
      String name = record.getLoggerName() == null ? "" : record.getLoggerName();
      StringBuilder line = new StringBuilder()
          .append(record.getInstant().truncatedTo(ChronoUnit.MILLIS)).append(' ')
          .append(record.getLevel().getName()).append(' ')
          .append(name.substring(name.lastIndexOf('.') + 1)).append(": ")
          .append(formatMessage(record)).append(System.lineSeparator());
      if (record.getThrown() != null) {
        StringWriter trace = new StringWriter();
        record.getThrown().printStackTrace(new PrintWriter(trace));
        line.append(trace);
      }
      return line.toString();
    }
  }
}
