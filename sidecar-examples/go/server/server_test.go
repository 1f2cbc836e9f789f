package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "projector-gateway/sidecar/projectionpb"
)

// start serves an echo reducer (it answers with the request's eventId) and describe on a
// free loopback port and returns a client connection to it.
func start(t *testing.T, describe DescribeFunc) (*Server, *grpc.ClientConn, <-chan error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo := func(req *pb.ProjectionRequest) *pb.ProjectionResponse {
		return &pb.ProjectionResponse{EventId: req.GetEventId()}
	}
	srv := New(echo, describe, slog.New(slog.NewTextHandler(io.Discard, nil)))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.grpc.Stop()
	})
	return srv, conn, served
}

func TestAStreamIsAnsweredInOrder(t *testing.T) {
	_, conn, _ := start(t, nil)
	client := pb.NewProjectionClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := client.Project(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	sent := make(chan error, 1)
	go func() { // the gateway keeps a window of requests in flight: send without waiting
		for i := range n {
			if err := stream.Send(&pb.ProjectionRequest{EventId: fmt.Sprint(i)}); err != nil {
				sent <- err
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	for i := range n {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if resp.GetEventId() != fmt.Sprint(i) {
			t.Fatalf("response %d answers %q", i, resp.GetEventId())
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last response: %v, want the stream to end cleanly", err)
	}
}

func TestShutdownEndsOpenStreamsCleanly(t *testing.T) {
	srv, conn, served := start(t, nil)
	client := pb.NewProjectionClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := client.Project(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.ProjectionRequest{EventId: "a"}); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetEventId() != "a" {
		t.Fatalf("%v, %v", resp, err)
	}
	// The client keeps its stream open, as the gateway does; Shutdown must not wait for it.
	stopped := make(chan struct{})
	go func() {
		srv.Shutdown(20 * time.Second)
		close(stopped)
	}()
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("open stream on shutdown: %v, want a clean end (status OK)", err)
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("Shutdown did not return")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

func TestDescribeIsServedWhenGiven(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, conn, _ := start(t, func(req *pb.DescribeRequest) *pb.DescribeResponse {
		return &pb.DescribeResponse{Projection: "for " + req.GetConnector()}
	})
	resp, err := pb.NewProjectionInfoClient(conn).Describe(ctx, &pb.DescribeRequest{Connector: "bookings"})
	if err != nil || resp.GetProjection() != "for bookings" {
		t.Fatalf("%v, %v", resp, err)
	}

	_, conn, _ = start(t, nil)
	_, err = pb.NewProjectionInfoClient(conn).Describe(ctx, &pb.DescribeRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("without a DescribeFunc: %v, want UNIMPLEMENTED (the gateway then sends every event)", err)
	}
}
