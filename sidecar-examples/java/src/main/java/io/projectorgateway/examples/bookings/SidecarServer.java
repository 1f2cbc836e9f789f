package io.projectorgateway.examples.bookings;

import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import java.io.IOException;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.Logger;

/**
 * The running gRPC server: binds the address, serves {@link ProjectionService} and
 * {@link DescribeService}, and stops in an orderly way. Keeps every grpc-java and Netty setting
 * in one place, out of the CLI.
 */
final class SidecarServer {
  private static final Logger LOG = Logger.getLogger(SidecarServer.class.getName());

  /** Requests carry whole event payloads; grpc-java's default limit is 4 MiB. */
  private static final int MAX_MESSAGE_BYTES = 64 << 20;

  private final Server server;
  private final ProjectionService service;
  private final AtomicBoolean stopped = new AtomicBoolean();

  private SidecarServer(Server server, ProjectionService service) {
    this.server = server;
    this.service = service;
  }

  /** Binds {@code address} and starts serving; fails when the address cannot be bound. */
  static SidecarServer start(ListenAddress address, Reducer reducer) throws IOException {
    ProjectionService service = new ProjectionService(reducer);
    DescribeService describe = new DescribeService(reducer);
    Server server = NettyServerBuilder.forAddress(address.socketAddress())
        // Reducing an event is quick and never blocks: answering on the transport's own thread
        // saves a thread hop per event.
        .directExecutor()
        .maxInboundMessageSize(MAX_MESSAGE_BYTES)
        // The gateway pings every 30 s, idle or not; grpc-java would answer pings more frequent
        // than every 5 minutes with GOAWAY "too_many_pings" and drop the connection.
        .permitKeepAliveTime(10, TimeUnit.SECONDS)
        .permitKeepAliveWithoutCalls(true)
        .addService(service)
        .addService(describe)
        .build();
    try {
      server.start();
    } catch (IOException e) {
      throw new IOException("cannot listen on " + address + ": "
          + (e.getCause() != null ? e.getCause().getMessage() : e.getMessage()), e);
    }
    return new SidecarServer(server, service);
  }

  /** The port actually bound (the system's pick when the address asked for port 0). */
  int port() {
    return server.getPort();
  }

  /**
   * Ends the open streams cleanly, stops accepting connections, and waits up to {@code grace}
   * for the calls to finish before cancelling whatever is left. Only the first call does
   * anything.
   */
  void stop(Duration grace) throws InterruptedException {
    if (!stopped.compareAndSet(false, true)) {
      return;
    }
    LOG.info(() -> "stopping: ending " + service.openStreams() + " open streams");
    service.stop();
    server.shutdown();
    if (!server.awaitTermination(grace.toMillis(), TimeUnit.MILLISECONDS)) {
      LOG.warning(() -> "calls still running after " + grace.toMillis() + " ms; cancelling them");
      server.shutdownNow();
      server.awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /** Blocks until the server has terminated. */
  void awaitTermination() throws InterruptedException {
    server.awaitTermination();
  }
}
