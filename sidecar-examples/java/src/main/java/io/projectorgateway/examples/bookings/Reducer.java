package io.projectorgateway.examples.bookings;

import com.google.protobuf.Any;
import com.google.protobuf.Message;
import io.projectorgateway.projection.DescribeResponse;
import io.projectorgateway.projection.Ignore;
import io.projectorgateway.projection.ProjectionRequest;
import io.projectorgateway.projection.ProjectionResponse;
import io.projectorgateway.projection.ReducerError;
import java.util.List;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * The reducer as pure functions: one {@code ProjectionRequest} in, its
 * {@code ProjectionResponse} out ({@link #reduce}); and what the sidecar says about itself
 * ({@link #describe}).
 *
 * <p>This is the whole contract between the gateway and a reducer, with no gRPC in sight, so it
 * can be unit-tested directly and reused behind any transport. It decodes the event
 * ({@link BookingEvent}), hands it to the {@link Projector} of the configured {@link Target}, and
 * packs the operations in {@code google.protobuf.Any}: the first in {@code operation}, the rest
 * in {@code operations}, applied by the gateway in that order in one transaction. Unused event
 * types are answered with {@code Ignore}. It never throws: a bad payload (or a bug) becomes a
 * non-retryable {@code ReducerError}, so one bad event goes to the connector's poison policy
 * instead of tearing down the stream. Every response carries the request's {@code eventId}.
 */
public final class Reducer {
  /** The read model's name, recorded by the gateway in the target's {@code projections}. */
  public static final String PROJECTION = "bookings";
  /**
   * The version of the reducer's logic: change it when what the reducer writes changes, and a
   * gateway with {@code sidecar.rebuild_on_new_version: true} rebuilds the read model.
   */
  public static final String VERSION = "1";

  private static final Logger LOG = Logger.getLogger(Reducer.class.getName());
  private static final Any IGNORE = Any.pack(Ignore.getDefaultInstance());

  private final Target target;
  private final Projector projector;

  public Reducer(Target target) {
    this.target = target;
    this.projector = target.projector();
  }

  public Target target() {
    return target;
  }

  /** The response to one event. */
  public ProjectionResponse reduce(ProjectionRequest request) {
    ProjectionResponse.Builder response =
        ProjectionResponse.newBuilder().setEventId(request.getEventId());
    List<Message> operations;
    try {
      operations = BookingEvent.decode(request)
          .map(event -> event.projectWith(projector))
          .orElse(List.of());
    } catch (PayloadException e) {
      String message = origin(request) + ": " + e.getMessage();
      LOG.warning(message);
      return response.setError(error(message)).build();
    } catch (RuntimeException e) {
      String message = origin(request) + ": reducer failed: " + e;
      LOG.log(Level.SEVERE, message, e);
      return response.setError(error(message)).build();
    }
    if (operations.isEmpty()) {
      return response.setOperation(IGNORE).build();
    }
    response.setOperation(Any.pack(operations.get(0)));
    for (Message operation : operations.subList(1, operations.size())) {
      response.addOperations(Any.pack(operation));
    }
    return response.build();
  }

  /**
   * The answer to {@code projection.ProjectionInfo/Describe}: the read model's name and version,
   * the handled event types (the gateway then sends only those, so {@code GuestRegistered} never
   * crosses the wire), and the operations that clear this target's read model for a rebuild.
   */
  public DescribeResponse describe() {
    DescribeResponse.Builder description = DescribeResponse.newBuilder()
        .setProjection(PROJECTION)
        .setVersion(VERSION)
        .addAllEventTypes(BookingEvent.TYPES);
    for (Message operation : projector.resetOperations()) {
      description.addResetOperations(Any.pack(operation));
    }
    return description.build();
  }

  private static String origin(ProjectionRequest request) {
    return "event " + request.getEventId() + " (" + request.getEventType() + ", stream "
        + request.getStream() + ")";
  }

  private static ReducerError error(String message) {
    return ReducerError.newBuilder().setMessage(message).setRetryable(false).build();
  }
}
