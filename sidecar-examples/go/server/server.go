// Package server serves a reduce function as the gRPC service projection.Projection/Project,
// the contract between projector-gateway and a reducer sidecar, and optionally a description
// of the reducer as projection.ProjectionInfo/Describe.
//
// It exists so that a reducer (package bookings) is only a function from request to response:
// everything about streams lives here. The gateway opens one bidirectional stream per
// partition and keeps a window of requests in flight; each is answered in the order received.
// On shutdown, open streams end cleanly (status OK) after the event being answered, instead of
// waiting for the gateway to hang up: the gateway sends every unanswered event again when it
// reconnects, so nothing is lost.
package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	pb "projector-gateway/sidecar/projectionpb"
)

// ReduceFunc answers one request. It must be deterministic and safe for concurrent use: each
// stream calls it from its own goroutine.
type ReduceFunc func(*pb.ProjectionRequest) *pb.ProjectionResponse

// DescribeFunc answers projection.ProjectionInfo/Describe.
type DescribeFunc func(*pb.DescribeRequest) *pb.DescribeResponse

// Server is a gRPC server with the Projection service, and the optional ProjectionInfo
// service when it has a DescribeFunc.
type Server struct {
	grpc    *grpc.Server
	service *service
}

// New creates a server whose Project streams are answered with reduce, and whose Describe
// calls with describe; with a nil describe, Describe answers UNIMPLEMENTED, which the gateway
// takes as "send every event".
func New(reduce ReduceFunc, describe DescribeFunc, log *slog.Logger) *Server {
	svc := &service{reduce: reduce, log: log, stopping: make(chan struct{})}
	g := grpc.NewServer(
		// Room for the gateway's window of requests without waiting for window updates.
		grpc.InitialWindowSize(4<<20),
		grpc.InitialConnWindowSize(16<<20),
		grpc.MaxRecvMsgSize(64<<20),
	)
	pb.RegisterProjectionServer(g, svc)
	if describe != nil {
		pb.RegisterProjectionInfoServer(g, &info{describe: describe, log: log})
	}
	return &Server{grpc: g, service: svc}
}

// Serve accepts connections on lis until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	err := s.grpc.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, ends every open stream after the event it is
// answering, and waits for them; after grace it closes whatever is left.
func (s *Server) Shutdown(grace time.Duration) {
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop() // refuses new streams, then waits for open ones
		close(done)
	}()
	s.service.stop()
	select {
	case <-done:
	case <-time.After(grace):
		s.service.log.Warn("streams did not end within the grace period; closing them", "grace", grace)
		s.grpc.Stop()
		<-done
	}
}

type service struct {
	pb.UnimplementedProjectionServer
	reduce   ReduceFunc
	log      *slog.Logger
	stopping chan struct{} // closed by stop
	stopOnce sync.Once
}

func (s *service) stop() { s.stopOnce.Do(func() { close(s.stopping) }) }

// Project answers the requests of one stream, in order, until the gateway closes it or the
// server stops.
func (s *service) Project(stream grpc.BidiStreamingServer[pb.ProjectionRequest, pb.ProjectionResponse]) error {
	ctx := stream.Context()
	from := "unknown"
	if p, ok := peer.FromContext(ctx); ok {
		from = p.Addr.String()
	}
	s.log.Info("stream opened", "peer", from)
	answered := 0
	defer func() { s.log.Info("stream closed", "peer", from, "answered", answered) }()

	// Recv blocks until a request arrives, so it runs in its own goroutine and this one can
	// also watch for shutdown. The goroutine ends when Project returns: the stream's context
	// is then cancelled and Recv fails.
	requests := make(chan *pb.ProjectionRequest)
	received := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				received <- err
				return
			}
			select {
			case requests <- req:
			case <-ctx.Done():
				return
			}
		}
	}()

	for {
		select {
		case req := <-requests:
			if err := stream.Send(s.reduce(req)); err != nil {
				return err
			}
			answered++
		case err := <-received:
			if errors.Is(err, io.EOF) {
				return nil // the gateway closed its side: done
			}
			return err
		case <-s.stopping:
			return nil
		}
	}
}

type info struct {
	pb.UnimplementedProjectionInfoServer
	describe DescribeFunc
	log      *slog.Logger
}

func (i *info) Describe(_ context.Context, req *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	i.log.Info("described", "connector", req.GetConnector())
	return i.describe(req), nil
}
