package io.projectorgateway.examples.bookings;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.Inet6Address;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** --address HOST:PORT: kept as written for the `listening on` line, checked before starting. */
class ListenAddressTest {
  @Test
  void parsesHostAndPort() {
    ListenAddress address = ListenAddress.parse("127.0.0.1:50051");
    assertEquals("127.0.0.1", address.host());
    assertEquals(50051, address.port());
    assertEquals("127.0.0.1:41000", address.withPort(41000));
  }

  @Test
  void keepsIpv6BracketsForPrintingAndDropsThemForBinding() {
    ListenAddress address = ListenAddress.parse("[::1]:0");
    assertEquals("[::1]:5000", address.withPort(5000));
    assertInstanceOf(Inet6Address.class, address.socketAddress().getAddress());
    assertTrue(address.socketAddress().getAddress().isLoopbackAddress());
  }

  @ParameterizedTest
  @ValueSource(strings = {"127.0.0.1", ":50051", "localhost:", "localhost:http", "h:70000",
      "h:-1", "::1:50051"})
  void rejectsWhatIsNotHostColonPort(String text) {
    assertThrows(IllegalArgumentException.class, () -> ListenAddress.parse(text));
  }
}
