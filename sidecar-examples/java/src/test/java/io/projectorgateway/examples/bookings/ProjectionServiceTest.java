package io.projectorgateway.examples.bookings;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import io.projectorgateway.projection.ProjectionGrpc;
import io.projectorgateway.projection.ProjectionRequest;
import io.projectorgateway.projection.ProjectionResponse;
import java.io.IOException;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The gRPC service over an in-memory channel: order, eventIds, and a clean stop. */
class ProjectionServiceTest {
  private static final String[][] EVENTS = {
      {"RoomBooked", Events.ROOM_BOOKED}, {"GuestRegistered", Events.GUEST_REGISTERED},
      {"PaymentRecorded", Events.PAYMENT_RECORDED}, {"GuestCheckedIn", Events.GUEST_CHECKED_IN},
      {"GuestCheckedOut", Events.GUEST_CHECKED_OUT}};

  private ProjectionService service;
  private Server server;
  private ManagedChannel channel;

  @BeforeEach
  void start() throws IOException {
    String name = InProcessServerBuilder.generateName();
    service = new ProjectionService(new Reducer(Target.SQL));
    server = InProcessServerBuilder.forName(name).directExecutor().addService(service).build()
        .start();
    channel = InProcessChannelBuilder.forName(name).directExecutor().build();
  }

  @AfterEach
  void stop() throws InterruptedException {
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }

  /** Collects a stream's responses and how it ended. */
  private static final class Responses implements StreamObserver<ProjectionResponse> {
    final List<ProjectionResponse> received = new CopyOnWriteArrayList<>();
    final CompletableFuture<Status> ended = new CompletableFuture<>();

    @Override
    public void onNext(ProjectionResponse response) {
      received.add(response);
    }

    @Override
    public void onError(Throwable error) {
      ended.complete(Status.fromThrowable(error));
    }

    @Override
    public void onCompleted() {
      ended.complete(Status.OK);
    }
  }

  private static ProjectionRequest event(int i) {
    String[] event = EVENTS[i % EVENTS.length];
    return Events.request(event[0], event[1]).toBuilder()
        .setEventId("event-" + i)
        .setGlobalPosition(i + 1)
        .build();
  }

  @Test
  void everyRequestIsAnsweredInOrderWithItsEventId() throws Exception {
    Responses responses = new Responses();
    StreamObserver<ProjectionRequest> requests = ProjectionGrpc.newStub(channel).project(responses);
    int count = 1_000;
    for (int i = 0; i < count; i++) {
      requests.onNext(event(i));
    }
    requests.onCompleted();
    assertEquals(Status.Code.OK, responses.ended.get(10, TimeUnit.SECONDS).getCode());
    assertEquals(count, responses.received.size());
    Reducer reducer = new Reducer(Target.SQL);
    for (int i = 0; i < count; i++) {
      assertEquals(reducer.reduce(event(i)), responses.received.get(i), "response " + i);
    }
    assertEquals(0, service.openStreams());
  }

  @Test
  void stopEndsOpenStreamsWithStatusOk() throws Exception {
    Responses responses = new Responses();
    StreamObserver<ProjectionRequest> requests = ProjectionGrpc.newStub(channel).project(responses);
    requests.onNext(event(0));
    assertEquals(1, responses.received.size());
    assertEquals(1, service.openStreams());

    service.stop();
    assertEquals(Status.Code.OK, responses.ended.get(10, TimeUnit.SECONDS).getCode());
    assertEquals(0, service.openStreams());

    // A stream opened after stop() is ended at once, unanswered.
    Responses late = new Responses();
    ProjectionGrpc.newStub(channel).project(late).onNext(event(1));
    assertEquals(Status.Code.OK, late.ended.get(10, TimeUnit.SECONDS).getCode());
    assertTrue(late.received.isEmpty());
  }

  @Test
  void aStreamCancelledByTheGatewayIsForgotten() throws Exception {
    Responses responses = new Responses();
    StreamObserver<ProjectionRequest> requests = ProjectionGrpc.newStub(channel).project(responses);
    requests.onNext(event(0));
    requests.onError(Status.CANCELLED.asRuntimeException());
    assertEquals(Status.Code.CANCELLED, responses.ended.get(10, TimeUnit.SECONDS).getCode());
    assertEquals(0, service.openStreams());
  }
}
