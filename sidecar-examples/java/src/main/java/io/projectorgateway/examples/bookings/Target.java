package io.projectorgateway.examples.bookings;

import java.util.Arrays;
import java.util.Locale;
import java.util.function.Supplier;
import java.util.stream.Collectors;

/**
 * The kind of database the reducer writes for, chosen by the {@code REDUCER_TARGET} environment
 * variable: {@code sql} (the default), {@code mongo} or {@code elastic}.
 *
 * <p>The gateway refuses operations its connector's sink cannot apply, so the reducer must emit
 * the family that matches the sink; one sidecar binary serves all three. The gateway has SQL
 * sinks (SQLite, PostgreSQL) and a MongoDB sink; the Elasticsearch mapping awaits its sink.
 */
public enum Target {
  SQL("sql", SqlProjector::new),
  MONGO("mongo", MongoProjector::new),
  ELASTIC("elastic", ElasticProjector::new);

  /** The environment variable that selects the target. */
  public static final String VARIABLE = "REDUCER_TARGET";

  private final String configName;
  private final Supplier<Projector> projector;

  Target(String configName, Supplier<Projector> projector) {
    this.configName = configName;
    this.projector = projector;
  }

  /** The projector that writes this target's read model. */
  public Projector projector() {
    return projector.get();
  }

  /** The value of {@code REDUCER_TARGET} that selects this target. */
  public String configName() {
    return configName;
  }

  /**
   * The target a value of {@code REDUCER_TARGET} names: {@code null} or blank means {@code sql};
   * case does not matter; anything else is an {@link IllegalArgumentException} that lists the
   * accepted values.
   */
  public static Target parse(String value) {
    if (value == null || value.isBlank()) {
      return SQL;
    }
    String wanted = value.trim().toLowerCase(Locale.ROOT);
    for (Target target : values()) {
      if (target.configName.equals(wanted)) {
        return target;
      }
    }
    throw new IllegalArgumentException(VARIABLE + "=" + value + " is not a target; use one of "
        + Arrays.stream(values()).map(Target::configName).collect(Collectors.joining(", ")));
  }
}
