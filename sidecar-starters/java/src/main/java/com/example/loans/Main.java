package com.example.loans;

import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import io.projectorgateway.projection.DescribeRequest;
import io.projectorgateway.projection.DescribeResponse;
import io.projectorgateway.projection.ProjectionGrpc;
import io.projectorgateway.projection.ProjectionInfoGrpc;
import io.projectorgateway.projection.ProjectionRequest;
import io.projectorgateway.projection.ProjectionResponse;
import java.io.IOException;
import java.net.InetSocketAddress;

/**
 * The library-loans reducer sidecar for projector-gateway: a gRPC server that answers each
 * event of a stream, in the order received, with the reducer's statements
 * ({@code projection.Projection/Project}), and serves {@code projection.ProjectionInfo/Describe}.
 *
 * <pre>java -jar target/library-loans.jar    # listens on $REDUCER_ADDRESS (default 127.0.0.1:50051)</pre>
 *
 * <p>Prints {@code listening on HOST:PORT} once ready, logs to stderr, stops on SIGTERM / SIGINT.
 */
public final class Main {
    private Main() {}

    /** One stream per gateway partition: every request is answered, in order, as it arrives. */
    static final class ProjectionService extends ProjectionGrpc.ProjectionImplBase {
        @Override
        public StreamObserver<ProjectionRequest> project(StreamObserver<ProjectionResponse> answers) {
            return new StreamObserver<>() {
                @Override
                public void onNext(ProjectionRequest event) {
                    answers.onNext(Reducer.respond(event));
                }

                @Override
                public void onError(Throwable t) {
                    // The gateway went away; it sends unanswered events again when it reconnects.
                }

                @Override
                public void onCompleted() {
                    answers.onCompleted();
                }
            };
        }
    }

    static final class InfoService extends ProjectionInfoGrpc.ProjectionInfoImplBase {
        @Override
        public void describe(DescribeRequest request, StreamObserver<DescribeResponse> answer) {
            answer.onNext(Reducer.describe());
            answer.onCompleted();
        }
    }

    public static void main(String[] args) throws InterruptedException {
        String address = System.getenv().getOrDefault("REDUCER_ADDRESS", "127.0.0.1:50051");
        int colon = address.lastIndexOf(':');
        String host = address.substring(0, Math.max(colon, 0));
        Server server;
        try {
            int port = Integer.parseInt(address.substring(colon + 1));
            server = NettyServerBuilder.forAddress(new InetSocketAddress(host, port))
                    .addService(new ProjectionService())
                    .addService(new InfoService())
                    .build()
                    .start();
        } catch (IOException | RuntimeException e) {
            System.err.println("cannot listen on " + address + ": " + e.getMessage());
            System.exit(1);
            return;
        }
        // Open streams are cut on SIGTERM / SIGINT; the gateway sends unanswered events again.
        Runtime.getRuntime().addShutdownHook(new Thread(server::shutdownNow));
        System.out.println("listening on " + host + ":" + server.getPort());
        server.awaitTermination();
    }
}
