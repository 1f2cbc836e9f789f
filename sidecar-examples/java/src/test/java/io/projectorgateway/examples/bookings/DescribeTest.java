package io.projectorgateway.examples.bookings;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Struct;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.projectorgateway.projection.DeleteMany;
import io.projectorgateway.projection.DescribeRequest;
import io.projectorgateway.projection.DescribeResponse;
import io.projectorgateway.projection.ProjectionInfoGrpc;
import io.projectorgateway.projection.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** What Describe declares: the same name, version and types for every target; its own reset. */
class DescribeTest {
  @ParameterizedTest
  @EnumSource(Target.class)
  void declaresTheProjectionAndTheFiveHandledTypes(Target target) {
    DescribeResponse description = new Reducer(target).describe();
    assertEquals("bookings", description.getProjection());
    assertEquals("1", description.getVersion());
    assertEquals(List.of("RoomBooked", "PaymentRecorded", "GuestCheckedIn", "GuestCheckedOut",
        "BookingCancelled"), description.getEventTypesList());
  }

  @Test
  void sqlResetDeletesBothTables() throws InvalidProtocolBufferException {
    List<String> sql = new ArrayList<>();
    for (Any operation : new Reducer(Target.SQL).describe().getResetOperationsList()) {
      Statement statement = operation.unpack(Statement.class);
      assertEquals(0, statement.getParamsCount());
      sql.add(statement.getSql());
    }
    assertEquals(List.of("DELETE FROM bookings", "DELETE FROM guest_stats"), sql);
  }

  @Test
  void mongoResetEmptiesBothCollections() throws InvalidProtocolBufferException {
    List<String> collections = new ArrayList<>();
    for (Any operation : new Reducer(Target.MONGO).describe().getResetOperationsList()) {
      DeleteMany delete = operation.unpack(DeleteMany.class);
      // An empty filter, present on the wire: the gateway refuses a missing one.
      assertTrue(delete.hasFilter());
      assertEquals(Struct.getDefaultInstance(), delete.getFilter());
      assertEquals(0, delete.getIntegerFieldsCount());
      collections.add(delete.getCollection());
    }
    assertEquals(List.of("bookings", "guest_stats"), collections);
  }

  @Test
  void theServiceAnswersWithTheDescription() throws Exception {
    String name = InProcessServerBuilder.generateName();
    Reducer reducer = new Reducer(Target.SQL);
    Server server = InProcessServerBuilder.forName(name).directExecutor()
        .addService(new DescribeService(reducer)).build().start();
    ManagedChannel channel = InProcessChannelBuilder.forName(name).directExecutor().build();
    try {
      DescribeResponse answer = ProjectionInfoGrpc.newBlockingStub(channel)
          .describe(DescribeRequest.newBuilder().setConnector("bookings").build());
      assertEquals(reducer.describe(), answer);
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  @Test
  void everyHandledTypeIsDecoded() {
    for (String type : BookingEvent.TYPES) {
      assertEquals(true, new Reducer(Target.SQL)
          .reduce(Events.request(type, "{}")).hasError(), () -> type + " was not decoded");
    }
  }
}
