package io.projectorgateway.examples.bookings;

import java.net.InetSocketAddress;

/**
 * The {@code --address HOST:PORT} to listen on, e.g. {@code 127.0.0.1:50051} or
 * {@code [::1]:0}; port 0 lets the system pick a free port.
 *
 * <p>Parsed once at the edge so a typo fails with a message before anything starts, and kept as
 * written so that the {@code listening on HOST:PORT} line shows the host the operator gave.
 */
record ListenAddress(String host, int port) {

  static ListenAddress parse(String text) {
    int colon = text.lastIndexOf(':');
    if (colon <= 0 || colon == text.length() - 1) {
      throw new IllegalArgumentException("--address must be HOST:PORT, got '" + text + "'");
    }
    String host = text.substring(0, colon);
    int port;
    try {
      port = Integer.parseInt(text.substring(colon + 1));
    } catch (NumberFormatException e) {
      port = -1;
    }
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException(
          "--address must be HOST:PORT with a port from 0 to 65535, got '" + text + "'");
    }
    if (host.contains(":") && !(host.startsWith("[") && host.endsWith("]"))) {
      throw new IllegalArgumentException(
          "--address: write an IPv6 host in brackets, e.g. [::1]:50051, got '" + text + "'");
    }
    return new ListenAddress(host, port);
  }

  /** The socket address to bind (brackets of an IPv6 host removed). */
  InetSocketAddress socketAddress() {
    String bare = host.startsWith("[") ? host.substring(1, host.length() - 1) : host;
    return new InetSocketAddress(bare, port);
  }

  @Override
  public String toString() {
    return host + ":" + port;
  }

  /** {@code HOST:PORT} with another port (the one actually bound when this one is 0). */
  String withPort(int boundPort) {
    return host + ":" + boundPort;
  }
}
