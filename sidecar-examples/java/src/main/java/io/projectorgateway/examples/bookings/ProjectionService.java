package io.projectorgateway.examples.bookings;

import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import io.projectorgateway.projection.ProjectionGrpc;
import io.projectorgateway.projection.ProjectionRequest;
import io.projectorgateway.projection.ProjectionResponse;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Logger;

/**
 * The gRPC side of the sidecar: serves {@code projection.Projection/Project} by answering each
 * request of a stream, as it arrives, with {@link Reducer#reduce}.
 *
 * <p>grpc-java hands the messages of one call to its request observer one at a time, in order,
 * so answering inside {@code onNext} keeps the responses in request order with no queue of our
 * own; the gateway's window bounds how many answers can be waiting to be sent.
 *
 * <p>The gateway keeps its streams open for as long as it runs, so a server shutdown alone would
 * wait for it forever. {@link #stop()} therefore ends every open stream with status OK right
 * after the answer in progress (never halfway through one); the gateway reconnects and sends
 * the unanswered events again. Each stream's observer is used under its own lock because stop
 * runs on another thread than the call's.
 */
final class ProjectionService extends ProjectionGrpc.ProjectionImplBase {
  private static final Logger LOG = Logger.getLogger(ProjectionService.class.getName());

  private final Reducer reducer;
  private final Set<OpenStream> open = ConcurrentHashMap.newKeySet();
  private final AtomicLong streamIds = new AtomicLong();
  private volatile boolean stopping;

  ProjectionService(Reducer reducer) {
    this.reducer = reducer;
  }

  @Override
  public StreamObserver<ProjectionRequest> project(StreamObserver<ProjectionResponse> responses) {
    OpenStream stream = new OpenStream(streamIds.incrementAndGet(),
        (ServerCallStreamObserver<ProjectionResponse>) responses);
    open.add(stream);
    LOG.info(() -> "stream " + stream.id + " opened");
    if (stopping) {
      stream.finish("the sidecar is stopping"); // opened while stop() was running
    }
    return stream;
  }

  /** Ends every open stream cleanly and refuses to answer on any stream opened later. */
  void stop() {
    stopping = true;
    for (OpenStream stream : open) {
      stream.finish("the sidecar is stopping");
    }
  }

  /** Streams open right now. */
  int openStreams() {
    return open.size();
  }

  /** One {@code Project} call: receives requests and sends their answers. */
  private final class OpenStream implements StreamObserver<ProjectionRequest> {
    private final long id;
    private final ServerCallStreamObserver<ProjectionResponse> responses;
    private long answered;
    private boolean closed;

    OpenStream(long id, ServerCallStreamObserver<ProjectionResponse> responses) {
      this.id = id;
      this.responses = responses;
      // Without a handler grpc-java throws from onNext on a cancelled call; with one we learn
      // of the cancellation and stop using the observer.
      responses.setOnCancelHandler(() -> close("cancelled by the gateway"));
    }

    @Override
    public synchronized void onNext(ProjectionRequest request) {
      if (closed) {
        return;
      }
      responses.onNext(reducer.reduce(request));
      answered++;
      LOG.fine(() -> "stream " + id + " answered " + request.getEventType() + " "
          + request.getEventId() + " at position " + request.getGlobalPosition());
    }

    @Override
    public void onError(Throwable error) {
      close("ended by the gateway (" + error.getMessage() + ")");
    }

    @Override
    public void onCompleted() {
      finish("the gateway closed it");
    }

    /** Completes the call with status OK, unless it is over already. */
    synchronized void finish(String why) {
      if (!closed) {
        responses.onCompleted();
      }
      close(why);
    }

    private synchronized void close(String why) {
      if (open.remove(this)) {
        LOG.info(() -> "stream " + id + " closed after " + answered + " events: " + why);
      }
      closed = true;
    }
  }
}
