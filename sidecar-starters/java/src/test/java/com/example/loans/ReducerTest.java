package com.example.loans;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Struct;
import com.google.protobuf.Timestamp;
import com.google.protobuf.Value;
import io.projectorgateway.projection.DescribeResponse;
import io.projectorgateway.projection.Ignore;
import io.projectorgateway.projection.ProjectionRequest;
import io.projectorgateway.projection.ProjectionResponse;
import io.projectorgateway.projection.SqlValue;
import io.projectorgateway.projection.Statement;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The handlers' answers, checked without the gateway: {@code ./run.sh test} (or {@code mvn test}). */
class ReducerTest {
    private static ProjectionRequest event(String type, Map<String, String> payload, long position) {
        Struct.Builder fields = Struct.newBuilder();
        payload.forEach((name, value) -> fields.putFields(name, Value.newBuilder().setStringValue(value).build()));
        return ProjectionRequest.newBuilder()
                .setEventType(type).setEventId("e-1").setStream("loan-1").setEventPayload(fields).setGlobalPosition(position)
                .build();
    }

    private static List<Statement> statements(ProjectionResponse answer) throws InvalidProtocolBufferException {
        List<Statement> found = new ArrayList<>();
        List<Any> operations = new ArrayList<>(List.of(answer.getOperation()));
        operations.addAll(answer.getOperationsList());
        for (Any operation : operations) {
            found.add(operation.unpack(Statement.class));
        }
        return found;
    }

    private static SqlValue text(String value) {
        return SqlValue.newBuilder().setStringValue(value).build();
    }

    private static SqlValue at(String value) {
        Instant instant = Instant.parse(value);
        return SqlValue.newBuilder().setTimestampValue(Timestamp.newBuilder().setSeconds(instant.getEpochSecond())).build();
    }

    @Test
    void bookLentInsertsTheLoanWithTypedParameters() throws Exception {
        ProjectionResponse answer = Reducer.respond(event("BookLent",
                Map.of("loanId", "loan-1", "bookId", "moby-dick", "memberId", "m-2", "lentAt", "2026-09-02T14:30:00Z"), 7));
        assertEquals("e-1", answer.getEventId());
        assertEquals(List.of(Reducer.statement(Reducer.LEND,
                text("loan-1"), text("moby-dick"), text("m-2"), at("2026-09-02T14:30:00Z"), Reducer.integer(7))),
                statements(answer));
    }

    @Test
    void bookReturnedSetsTheReturnTime() throws Exception {
        ProjectionResponse answer = Reducer.respond(event("BookReturned",
                Map.of("loanId", "loan-1", "returnedAt", "2026-09-10T09:15:00Z"), 9));
        assertEquals(List.of(Reducer.statement(Reducer.RETURN, text("loan-1"), at("2026-09-10T09:15:00Z"), Reducer.integer(9))),
                statements(answer));
    }

    @Test
    void aMissingFieldIsReportedAsAnErrorNotThrown() {
        ProjectionResponse answer = Reducer.respond(event("BookReturned", Map.of("loanId", "loan-1"), 9));
        assertFalse(answer.hasOperation());
        assertFalse(answer.getError().getRetryable());
        assertTrue(answer.getError().getMessage().contains("returnedAt"), answer.getError().getMessage());
    }

    @Test
    void anUnhandledEventIsIgnored() {
        assertTrue(Reducer.respond(event("MemberJoined", Map.of("memberId", "m-1"), 1)).getOperation().is(Ignore.class));
    }

    @Test
    void describeNamesTheProjectionAndTheHandledTypes() {
        DescribeResponse described = Reducer.describe();
        assertEquals(List.of("library-loans", "1"), List.of(described.getProjection(), described.getVersion()));
        assertEquals(List.of("BookLent", "BookReturned"), described.getEventTypesList());
    }
}
