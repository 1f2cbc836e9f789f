package io.projectorgateway.examples.bookings;

import io.grpc.stub.StreamObserver;
import io.projectorgateway.projection.DescribeRequest;
import io.projectorgateway.projection.DescribeResponse;
import io.projectorgateway.projection.ProjectionInfoGrpc;
import java.util.logging.Logger;

/**
 * Serves the optional {@code projection.ProjectionInfo/Describe}, which the gateway calls once
 * when a connector starts: with {@link Reducer#describe} it learns the event types to send (and
 * filters out the rest before they cross the wire) and the version of the read model, which it
 * rebuilds when the version changes and the connector allows it. A sidecar without this service
 * still works; it just gets every event.
 */
final class DescribeService extends ProjectionInfoGrpc.ProjectionInfoImplBase {
  private static final Logger LOG = Logger.getLogger(DescribeService.class.getName());

  private final DescribeResponse description;

  DescribeService(Reducer reducer) {
    this.description = reducer.describe();
  }

  @Override
  public void describe(DescribeRequest request, StreamObserver<DescribeResponse> response) {
    LOG.info(() -> "described " + description.getProjection() + " v" + description.getVersion()
        + " to connector " + request.getConnector());
    response.onNext(description);
    response.onCompleted();
  }
}
