package io.projectorgateway.examples.bookings;

/**
 * An event whose payload the reducer cannot use: a field is missing, has the wrong type, or the
 * raw JSON does not parse.
 *
 * <p>It is checked on purpose. Trying the same event again cannot fix its payload, so the
 * {@link Reducer} must turn this into a non-retryable {@code ReducerError} (which the gateway
 * hands to the connector's poison policy) instead of letting it escape and break the stream.
 */
public final class PayloadException extends Exception {
  private static final long serialVersionUID = 1L;

  public PayloadException(String message) {
    super(message);
  }
}
