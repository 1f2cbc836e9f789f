package com.example.loans;

import com.google.protobuf.Any;
import com.google.protobuf.Timestamp;
import com.google.protobuf.Value;
import io.projectorgateway.projection.DescribeResponse;
import io.projectorgateway.projection.Ignore;
import io.projectorgateway.projection.ProjectionRequest;
import io.projectorgateway.projection.ProjectionResponse;
import io.projectorgateway.projection.ReducerError;
import io.projectorgateway.projection.SqlValue;
import io.projectorgateway.projection.Statement;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * The library-loans reducer: one handler per event type, each turning an event into typed SQL
 * statements for the read model of schema.sql, and what {@code Describe} answers.
 *
 * <p>To add an event type: write a handler and add it to {@link #HANDLERS}. Handlers must be
 * deterministic: after a reconnect the gateway sends an event again.
 */
public final class Reducer {
    public static final String PROJECTION = "library-loans";
    /**
     * The version of the handlers' logic: change it when what they write changes (with
     * {@code sidecar.rebuild_on_new_version: true} the gateway then rebuilds the read model).
     */
    public static final String VERSION = "1";

    static final String LEND = "INSERT INTO loans (loan_id, book_id, member_id, lent_at, last_position) "
            + "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (loan_id) DO NOTHING";
    static final String RETURN = "UPDATE loans SET returned_at = $2, last_position = $3 WHERE loan_id = $1";

    /** Event type -> handler, in the order Describe lists them. */
    static final Map<String, Function<ProjectionRequest, List<Statement>>> HANDLERS = new LinkedHashMap<>();

    static {
        HANDLERS.put("BookLent", event -> List.of(statement(LEND,
                text(event, "loanId"), text(event, "bookId"), text(event, "memberId"), time(event, "lentAt"),
                integer(event.getGlobalPosition()))));
        HANDLERS.put("BookReturned", event -> List.of(statement(RETURN,
                text(event, "loanId"), time(event, "returnedAt"), integer(event.getGlobalPosition()))));
    }

    private Reducer() {}

    /** The event lacks a field a handler needs: reported to the gateway as the event's error. */
    static final class BadEvent extends RuntimeException {
        BadEvent(String message) {
            super(message);
        }
    }

    // --- Reading the payload (a google.protobuf.Struct) and typed SQL parameters -------------

    private static String field(ProjectionRequest event, String name) {
        Value value = event.getEventPayload().getFieldsMap().get(name);
        if (value == null || value.getKindCase() != Value.KindCase.STRING_VALUE) {
            throw new BadEvent("payload field '" + name + "' is missing or not a string");
        }
        return value.getStringValue();
    }

    static SqlValue text(ProjectionRequest event, String name) {
        return SqlValue.newBuilder().setStringValue(field(event, name)).build();
    }

    static SqlValue time(ProjectionRequest event, String name) {
        Instant instant;
        try {
            instant = Instant.parse(field(event, name));
        } catch (DateTimeParseException e) {
            throw new BadEvent("payload field '" + name + "' is not an RFC 3339 time");
        }
        Timestamp timestamp = Timestamp.newBuilder().setSeconds(instant.getEpochSecond()).setNanos(instant.getNano()).build();
        return SqlValue.newBuilder().setTimestampValue(timestamp).build();
    }

    static SqlValue integer(long value) {
        return SqlValue.newBuilder().setInt64Value(value).build();
    }

    /** A statement with placeholders $1, $2, ... bound by the gateway's database driver. */
    static Statement statement(String sql, SqlValue... params) {
        return Statement.newBuilder().setSql(sql).addAllParams(List.of(params)).build();
    }

    // --- Answers --------------------------------------------------------------------------------

    /** The projection, its version, and the event types to send (the gateway sends only those). */
    public static DescribeResponse describe() {
        return DescribeResponse.newBuilder()
                .setProjection(PROJECTION)
                .setVersion(VERSION)
                .addAllEventTypes(HANDLERS.keySet())
                // What clears the read model when the gateway rebuilds it.
                .addResetOperations(Any.pack(statement("DELETE FROM loans")))
                .build();
    }

    /** The answer to one event; never throws: a failure becomes the answer's error. */
    public static ProjectionResponse respond(ProjectionRequest event) {
        ProjectionResponse.Builder answer = ProjectionResponse.newBuilder().setEventId(event.getEventId());
        Function<ProjectionRequest, List<Statement>> handler = HANDLERS.get(event.getEventType());
        if (handler == null) {
            return answer.setOperation(Any.pack(Ignore.getDefaultInstance())).build();
        }
        List<Statement> statements;
        try {
            statements = handler.apply(event);
        } catch (RuntimeException e) {
            String message = event.getEventType() + " " + event.getEventId() + " (stream " + event.getStream() + "): " + e.getMessage();
            System.err.println(message);
            return answer.setError(ReducerError.newBuilder().setMessage(message).setRetryable(false)).build();
        }
        for (int i = 0; i < statements.size(); i++) {
            if (i == 0) {
                answer.setOperation(Any.pack(statements.get(i)));
            } else {
                answer.addOperations(Any.pack(statements.get(i)));
            }
        }
        return answer.build();
    }
}
