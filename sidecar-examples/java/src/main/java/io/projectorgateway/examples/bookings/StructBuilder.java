package io.projectorgateway.examples.bookings;

import com.google.protobuf.Struct;
import com.google.protobuf.Value;

/**
 * A fluent builder of {@code google.protobuf.Struct}, the JSON-like type of the MongoDB filters
 * and updates and of the Elasticsearch documents in {@code proto/projection.proto}.
 *
 * <p>Written out with the generated builders, a two-level Mongo update is a dozen lines of
 * {@code Value.newBuilder()} that hide the document's shape; with this it reads like the JSON it
 * becomes: {@code struct().put("$inc", struct().put("bookings", 1))}.
 *
 * <p>A Struct has no integer type: {@link #put(String, long)} stores a double, which is exact up
 * to 2^53 (90 trillion in cents); MongoDB operations name their integers in
 * {@code integerFields} so the sink stores them as such.
 */
public final class StructBuilder {
  private final Struct.Builder struct = Struct.newBuilder();

  private StructBuilder() {}

  /** An empty document. */
  public static StructBuilder struct() {
    return new StructBuilder();
  }

  public StructBuilder put(String key, String value) {
    return put(key, Value.newBuilder().setStringValue(value).build());
  }

  public StructBuilder put(String key, long value) {
    return put(key, Value.newBuilder().setNumberValue(value).build());
  }

  public StructBuilder put(String key, StructBuilder value) {
    return put(key, value.build());
  }

  public StructBuilder put(String key, Struct value) {
    return put(key, Value.newBuilder().setStructValue(value).build());
  }

  public StructBuilder put(String key, Value value) {
    struct.putFields(key, value);
    return this;
  }

  public boolean isEmpty() {
    return struct.getFieldsCount() == 0;
  }

  public Struct build() {
    return struct.build();
  }
}
