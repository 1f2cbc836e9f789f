package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "projector-gateway/sidecar/projectionpb"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestUsageAndConfigurationErrorsExitWith2(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--address", "50051"}, nil, "--address must be HOST:PORT"},
		{[]string{"--address", ":50051"}, nil, "--address must be HOST:PORT"},
		{[]string{"extra"}, nil, `unexpected argument "extra"`},
		{nil, map[string]string{"REDUCER_TARGET": "redis"}, `REDUCER_TARGET: unknown target "redis"`},
		{nil, map[string]string{"REDUCER_LOG_LEVEL": "loud"}, `REDUCER_LOG_LEVEL="loud" is not a level`},
	} {
		var stdout, stderr strings.Builder
		if code := run(tt.args, env(tt.env), &stdout, &stderr); code != 2 {
			t.Errorf("%v %v: exit %d, want 2", tt.args, tt.env, code)
		}
		if !strings.Contains(stderr.String(), tt.want) || stdout.Len() != 0 {
			t.Errorf("%v %v: stderr %q (want %q), stdout %q", tt.args, tt.env, stderr.String(), tt.want, stdout.String())
		}
	}
}

// The process contract of BOOKINGS.md: one `listening on HOST:PORT` line on stdout, the
// service answering there, and exit 0 on SIGTERM.
func TestListensAnswersAndStopsOnSIGTERM(t *testing.T) {
	stdoutR, stdoutW := io.Pipe()
	exit := make(chan int, 1)
	go func() {
		exit <- run([]string{"--address", "127.0.0.1:0"}, env(map[string]string{"REDUCER_TARGET": "sql"}), stdoutW, io.Discard)
		stdoutW.Close()
	}()
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	address, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "listening on 127.0.0.1:")
	if !ok || address == "0" {
		t.Fatalf("first line %q", line)
	}
	go func() { _, _ = io.Copy(io.Discard, stdoutR) }() // never block the program on stdout

	conn, err := grpc.NewClient("127.0.0.1:"+address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := pb.NewProjectionClient(conn).Project(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.ProjectionRequest{EventType: "GuestRegistered", EventId: "e-1"}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || resp.GetEventId() != "e-1" || !strings.HasSuffix(resp.GetOperation().GetTypeUrl(), "/projection.Ignore") {
		t.Fatalf("%v, %v", resp, err)
	}

	described, err := pb.NewProjectionInfoClient(conn).Describe(ctx, &pb.DescribeRequest{Connector: "bookings"})
	if err != nil || described.GetProjection() != "bookings" || len(described.GetEventTypes()) != 5 {
		t.Fatalf("Describe: %v, %v", described, err)
	}

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit %d after SIGTERM, want 0", code)
		}
	case <-ctx.Done():
		t.Fatal("no exit after SIGTERM")
	}
}
