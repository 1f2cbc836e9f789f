package io.projectorgateway.examples.bookings;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** REDUCER_TARGET picks the projector; sql is the default; a typo fails with the choices. */
class TargetTest {
  @Test
  void unsetOrBlankMeansSql() {
    assertEquals(Target.SQL, Target.parse(null));
    assertEquals(Target.SQL, Target.parse(""));
    assertEquals(Target.SQL, Target.parse("  "));
  }

  @Test
  void namesAreCaseInsensitive() {
    assertEquals(Target.SQL, Target.parse("sql"));
    assertEquals(Target.MONGO, Target.parse("Mongo"));
    assertEquals(Target.ELASTIC, Target.parse(" ELASTIC "));
  }

  @Test
  void eachTargetHasItsProjector() {
    assertInstanceOf(SqlProjector.class, Target.SQL.projector());
    assertInstanceOf(MongoProjector.class, Target.MONGO.projector());
    assertInstanceOf(ElasticProjector.class, Target.ELASTIC.projector());
  }

  @Test
  void anUnknownTargetListsTheChoices() {
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> Target.parse("postgres"));
    assertTrue(e.getMessage().contains("REDUCER_TARGET=postgres"), e.getMessage());
    assertTrue(e.getMessage().contains("sql, mongo, elastic"), e.getMessage());
  }
}
