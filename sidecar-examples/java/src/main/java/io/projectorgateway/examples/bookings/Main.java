package io.projectorgateway.examples.bookings;

import java.io.IOException;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.logging.Logger;
import sun.misc.Signal;

/**
 * The sidecar process: the command line and the process contract of
 * sidecar-examples/BOOKINGS.md.
 *
 * <pre>
 *   java -jar target/bookings-reducer.jar --address 127.0.0.1:50051 [--grace SECONDS]
 * </pre>
 *
 * <p>Once the server listens it prints exactly one line, {@code listening on HOST:PORT} (with the
 * real port when 0 was asked for), to stdout: tests and {@code projector-gateway demo} wait for
 * it. Everything else goes to stderr. SIGTERM and SIGINT stop it gracefully with exit status 0.
 * That needs signal handlers: on its own the JVM runs the shutdown hooks and exits with
 * 128 + signal (143 for SIGTERM), and its logging may already be closed while hooks run. A
 * shutdown hook still stops the server on any other way out (SIGHUP, {@code System.exit}).
 *
 * <p>Environment: {@code REDUCER_TARGET} = {@code sql} (default) | {@code mongo} |
 * {@code elastic}; {@code REDUCER_LOG_LEVEL} = {@code DEBUG} | {@code INFO} (default) |
 * {@code WARNING} | {@code ERROR}.
 */
public final class Main {
  private static final String DEFAULT_ADDRESS = "127.0.0.1:50051";
  private static final Duration DEFAULT_GRACE = Duration.ofSeconds(2);
  private static final String USAGE = String.join("\n",
      "usage: bookings-reducer [--address HOST:PORT] [--grace SECONDS]",
      "",
      "The bookings reducer sidecar for projector-gateway (projection.Projection/Project).",
      "",
      "  --address HOST:PORT  where to listen (default " + DEFAULT_ADDRESS
          + "; port 0 picks a free port)",
      "  --grace SECONDS      on SIGTERM/SIGINT, how long open calls may take to end (default 2)",
      "",
      "Environment: REDUCER_TARGET=sql|mongo|elastic (default sql),",
      "             REDUCER_LOG_LEVEL=DEBUG|INFO|WARNING|ERROR (default INFO)");

  private static final Logger LOG = Logger.getLogger(Main.class.getName());

  private Main() {}

  public static void main(String[] args) {
    System.exit(run(args));
  }

  /** What the command line asked for. */
  private record Options(ListenAddress address, Duration grace, boolean help) {}

  static int run(String[] args) {
    Options options;
    Target target;
    try {
      options = parse(args);
      if (options.help()) {
        System.out.println(USAGE);
        return 0;
      }
      StderrLogging.configure(System.getenv("REDUCER_LOG_LEVEL"));
      target = Target.parse(System.getenv(Target.VARIABLE));
    } catch (IllegalArgumentException e) {
      System.err.println("bookings-reducer: " + e.getMessage());
      System.err.println("Run with --help for usage.");
      return 2;
    }

    CountDownLatch stopRequested = new CountDownLatch(1);
    for (String name : new String[] {"TERM", "INT"}) {
      try {
        Signal.handle(new Signal(name), signal -> {
          LOG.info(() -> "SIG" + signal.getName() + " received");
          stopRequested.countDown();
        });
      } catch (IllegalArgumentException e) { // e.g. the JVM runs with -Xrs
        LOG.warning(() -> "cannot handle SIG" + name + " (" + e.getMessage() + ")");
      }
    }

    SidecarServer server;
    try {
      server = SidecarServer.start(options.address(), new Reducer(target));
    } catch (IOException e) {
      LOG.severe(e.getMessage());
      return 1;
    }
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try {
        server.stop(options.grace());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }, "bookings-reducer-shutdown"));

    System.out.println("listening on " + options.address().withPort(server.port()));
    System.out.flush();
    LOG.info(() -> "reducer ready on " + options.address().withPort(server.port()) + " (target "
        + target.configName() + ")");
    if (target == Target.ELASTIC) {
      LOG.warning("REDUCER_TARGET=elastic: the gateway has no Elasticsearch sink yet; its other"
          + " sinks refuse these operations");
    }

    try {
      stopRequested.await();
      server.stop(options.grace());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return 1;
    }
    LOG.info("stopped");
    return 0;
  }

  private static Options parse(String[] args) {
    ListenAddress address = ListenAddress.parse(DEFAULT_ADDRESS);
    Duration grace = DEFAULT_GRACE;
    for (int i = 0; i < args.length; i++) {
      String arg = args[i];
      String value = null;
      int equals = arg.indexOf('=');
      if (arg.startsWith("--") && equals > 0) {
        value = arg.substring(equals + 1);
        arg = arg.substring(0, equals);
      }
      switch (arg) {
        case "-h", "--help" -> {
          return new Options(address, grace, true);
        }
        case "--address" ->
            address = ListenAddress.parse(value != null ? value : next(args, ++i, arg));
        case "--grace" -> grace = parseGrace(value != null ? value : next(args, ++i, arg));
        default -> throw new IllegalArgumentException("unknown argument '" + args[i] + "'");
      }
    }
    return new Options(address, grace, false);
  }

  private static String next(String[] args, int i, String option) {
    if (i >= args.length) {
      throw new IllegalArgumentException(option + " needs a value");
    }
    return args[i];
  }

  private static Duration parseGrace(String text) {
    try {
      double seconds = Double.parseDouble(text);
      if (seconds >= 0 && seconds <= 3600) {
        return Duration.ofMillis(Math.round(seconds * 1000));
      }
    } catch (NumberFormatException e) {
      // reported below
    }
    throw new IllegalArgumentException("--grace must be a number of seconds from 0 to 3600, got '"
        + text + "'");
  }
}
