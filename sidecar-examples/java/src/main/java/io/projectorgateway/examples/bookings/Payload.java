package io.projectorgateway.examples.bookings;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import com.google.protobuf.util.JsonFormat;
import io.projectorgateway.projection.ProjectionRequest;
import java.util.Map;

/**
 * Typed, validated access to an event's JSON payload, whichever way the gateway sent it.
 *
 * <p>Depending on the connector's {@code payload} option the gateway sends the payload as a
 * {@code google.protobuf.Struct} ({@code eventPayload}), as the raw UTF-8 JSON bytes
 * ({@code payloadJson}), or both. Reducers should not care: this class reads the Struct when it
 * has fields and otherwise parses the JSON into one, so both paths behave identically. JSON
 * numbers are doubles in a Struct, so {@link #integer} accepts only whole numbers in range and
 * reports anything else as a {@link PayloadException} naming the field.
 */
public final class Payload {
  private final Map<String, Value> fields;

  private Payload(Map<String, Value> fields) {
    this.fields = fields;
  }

  /** The payload of {@code request}; fails only when {@code payloadJson} is not a JSON object. */
  public static Payload of(ProjectionRequest request) throws PayloadException {
    Struct struct = request.getEventPayload();
    if (struct.getFieldsCount() > 0) {
      return new Payload(struct.getFieldsMap());
    }
    ByteString json = request.getPayloadJson();
    if (json.isEmpty()) {
      return new Payload(Map.of());
    }
    return new Payload(parseObject(json));
  }

  private static Map<String, Value> parseObject(ByteString json) throws PayloadException {
    Struct.Builder struct = Struct.newBuilder();
    try {
      JsonFormat.parser().merge(json.toStringUtf8(), struct);
    } catch (InvalidProtocolBufferException | RuntimeException e) {
      throw new PayloadException("payloadJson is not a JSON object (" + e.getMessage() + ")");
    }
    return struct.getFieldsMap();
  }

  /** A required string field. */
  public String text(String name) throws PayloadException {
    Value value = present(name);
    if (value == null) {
      throw new PayloadException("payload field '" + name + "' is missing");
    }
    if (value.getKindCase() != Value.KindCase.STRING_VALUE) {
      throw new PayloadException("payload field '" + name + "' is not a string");
    }
    return value.getStringValue();
  }

  /** A required integer field: a JSON number with no fractional part that fits in a long. */
  public long integer(String name) throws PayloadException {
    Value value = present(name);
    if (value == null) {
      throw new PayloadException("payload field '" + name + "' is missing");
    }
    if (value.getKindCase() != Value.KindCase.NUMBER_VALUE) {
      throw new PayloadException("payload field '" + name + "' is not a number");
    }
    double number = value.getNumberValue();
    // 2^63 is exactly representable as a double; every double below it converts losslessly.
    if (number != Math.rint(number) || number < -0x1p63 || number >= 0x1p63) {
      throw new PayloadException(
          "payload field '" + name + "' is not a whole number in range (" + number + ")");
    }
    return (long) number;
  }

  /** The field's value, or null when it is absent or JSON null. */
  private Value present(String name) {
    Value value = fields.get(name);
    if (value == null
        || value.getKindCase() == Value.KindCase.NULL_VALUE
        || value.getKindCase() == Value.KindCase.KIND_NOT_SET) {
      return null;
    }
    return value;
  }
}
