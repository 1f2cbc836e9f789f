// Command library-loans is the library-loans reducer sidecar for projector-gateway: a gRPC
// server that answers each event of a stream, in the order received, with the reducer's
// statements (projection.Projection/Project), and serves projection.ProjectionInfo/Describe.
//
//	go build -o bin/sidecar . && bin/sidecar   # listens on $REDUCER_ADDRESS (default 127.0.0.1:50051)
//
// It prints `listening on HOST:PORT` once ready, logs to stderr, stops on SIGTERM / SIGINT.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"google.golang.org/grpc"

	pb "library-loans/projectionpb"
)

type projectionServer struct {
	pb.UnimplementedProjectionServer
}

// Project answers one stream (one per gateway partition): every request, in order.
func (projectionServer) Project(stream grpc.BidiStreamingServer[pb.ProjectionRequest, pb.ProjectionResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		answer := respond(req)
		if answer.Error != nil {
			log.Print(answer.Error.Message)
		}
		if err := stream.Send(answer); err != nil {
			return err
		}
	}
}

type infoServer struct {
	pb.UnimplementedProjectionInfoServer
}

func (infoServer) Describe(context.Context, *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	return describe(), nil
}

func main() {
	address := os.Getenv("REDUCER_ADDRESS")
	if address == "" {
		address = "127.0.0.1:50051"
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		log.Fatalf("REDUCER_ADDRESS must be HOST:PORT, not %q", address)
	}
	listener, err := net.Listen("tcp", address)
	if err != nil {
		log.Fatalf("cannot listen on %s: %v", address, err)
	}
	server := grpc.NewServer()
	pb.RegisterProjectionServer(server, projectionServer{})
	pb.RegisterProjectionInfoServer(server, infoServer{})

	go func() {
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
		<-signals
		server.Stop() // open streams are cut; the gateway sends unanswered events again
	}()
	port := listener.Addr().(*net.TCPAddr).Port
	fmt.Printf("listening on %s\n", net.JoinHostPort(host, strconv.Itoa(port)))
	if err := server.Serve(listener); err != nil {
		log.Fatalf("serving: %v", err)
	}
}
