// Command bookings-sidecar is the bookings reducer of sidecar-examples/BOOKINGS.md as a gRPC
// sidecar for projector-gateway: it serves projection.Projection/Project and answers each
// event with the operations that update the read model, and projection.ProjectionInfo/Describe
// (the handled event types, the read model's version and how to clear it for a rebuild).
//
//	bookings-sidecar --address 127.0.0.1:50051
//
// It prints exactly one line, `listening on HOST:PORT`, on stdout once it listens (port 0
// picks a free port, and the real one is printed), logs to stderr, and on SIGTERM or SIGINT
// ends its streams cleanly and exits 0.
//
// Environment: REDUCER_TARGET selects the operations, sql (default), mongo or elastic;
// REDUCER_LOG_LEVEL is debug, info (default), warn or error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"projector-gateway/sidecar/bookings"
	pb "projector-gateway/sidecar/projectionpb"
	"projector-gateway/sidecar/server"
)

const defaultAddress = "127.0.0.1:50051"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit code: 0 after a signal, 1 when it cannot
// listen or serve, 2 for a usage or configuration error.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("bookings-sidecar", flag.ContinueOnError)
	flags.SetOutput(stderr)
	address := flags.String("address", defaultAddress, "`HOST:PORT` to listen on; port 0 picks a free port")
	grace := flags.Duration("grace", 2*time.Second, "on SIGTERM/SIGINT, how long open streams may take to end before they are closed")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "bookings-sidecar: "+format+"\n", a...)
		return code
	}
	if flags.NArg() > 0 {
		return fail(2, "unexpected argument %q (see -help)", flags.Arg(0))
	}
	host, _, err := net.SplitHostPort(*address)
	if err != nil || host == "" {
		return fail(2, "--address must be HOST:PORT, e.g. %s; got %q", defaultAddress, *address)
	}
	target, err := bookings.ParseTarget(getenv("REDUCER_TARGET"))
	if err != nil {
		return fail(2, "REDUCER_TARGET: %v", err)
	}
	var level slog.Level
	if name := getenv("REDUCER_LOG_LEVEL"); name != "" {
		if err := level.UnmarshalText([]byte(name)); err != nil {
			return fail(2, "REDUCER_LOG_LEVEL=%q is not a level: use debug, info, warn or error", name)
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	lis, err := net.Listen("tcp", *address)
	if err != nil {
		return fail(1, "cannot listen on %s: %v", *address, err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	srv := server.New(func(req *pb.ProjectionRequest) *pb.ProjectionResponse {
		resp := bookings.Reduce(target, req)
		if resp.Error != nil {
			log.Warn("cannot reduce event", "error", resp.Error.Message)
		}
		return resp
	}, func(*pb.DescribeRequest) *pb.DescribeResponse { return bookings.Describe(target) }, log)

	signals, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	fmt.Fprintf(stdout, "listening on %s\n", net.JoinHostPort(host, strconv.Itoa(port)))
	log.Info("reducer ready", "address", lis.Addr().String(), "target", target.String())

	select {
	case <-signals.Done():
		log.Info("stopping", "grace", *grace)
		srv.Shutdown(*grace)
		if err := <-served; err != nil {
			return fail(1, "serving: %v", err)
		}
		log.Info("stopped")
		return 0
	case err := <-served:
		return fail(1, "serving on %s: %v", lis.Addr(), err)
	}
}
