// bench-go-host: the go-plugin (v1.8.0) side of intercom's benchmark harness (bench/).
// It loads a proto.KV plugin ("kv_grpc", go-plugin's examples/grpc shape) and runs the
// same loops as the Rust host (bench/src/bin/bench-host.rs), printing one JSON object.
//
//	bench-go-host get    --plugin PATH [--mux] [--mtls] --key K --warmup W --calls N --callers C [--plugins P]
//	bench-go-host launch --plugin PATH [--mux] [--mtls] --reps R
//	bench-go-host idle   --plugin PATH [--mux] [--mtls] --clients N
//	bench-go-host counter --plugin PATH [--mux] [--mtls] --warmup W --calls N
//
// get: W untimed then N timed KV.Get(K) calls shared by C goroutines on one client.
// Prints {"p50_ns","p99_ns","calls_per_s","bytes_per_s"}.
// launch: R times: launch, dispense, Get("small") (first_call_ns), then Kill (kill_ns).
// Prints the medians. idle: this process's RSS and open fds before and after launching N
// plugins (one call on each), as rss_per_client_bytes and fds_per_client.
// counter: the bidirectional example's Counter.Put(key "counter", 1) through a
// counter-plugin, W untimed then N timed: each serves AddHelper on a fresh broker id, the
// plugin dials it and calls Sum back (go-plugin's examples/bidirectional host).
// Prints {"p50_ns","p99_ns","knock_refused"}; a call whose knock go-plugin refuses
// ("no listener for id N") is made again and knock_refused counts it.
// The plugin runs in this process's working directory.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"intercom.test/fixtures/gen/counterpb"
	"intercom.test/fixtures/gen/kvpb"
)

type kvPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (kvPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return fmt.Errorf("bench-go-host has no server side")
}

func (kvPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return kvpb.NewKVClient(c), nil
}

var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "BASIC_PLUGIN",
	MagicCookieValue: "hello",
}

type options struct {
	plugin  string
	mux     bool
	mtls    bool
	key     string
	warmup  int
	calls   int
	callers int
	reps    int
	clients int
	plugins int
}

type counterPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (counterPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return fmt.Errorf("bench-go-host has no server side")
}

type counter struct {
	client counterpb.CounterClient
	broker *plugin.GRPCBroker
}

func (counterPlugin) GRPCClient(_ context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &counter{client: counterpb.NewCounterClient(c), broker: b}, nil
}

type addHelperServer struct {
	counterpb.UnimplementedAddHelperServer
}

func (addHelperServer) Sum(_ context.Context, req *counterpb.SumRequest) (*counterpb.SumResponse, error) {
	return &counterpb.SumResponse{R: req.A + req.B}, nil
}

// put is go-plugin's examples/bidirectional host's Put: serve AddHelper on a fresh broker
// id for the length of the call.
func (c *counter) put(key string, value int64) error {
	var (
		mu     sync.Mutex
		server *grpc.Server
	)
	newServer := func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		counterpb.RegisterAddHelperServer(s, addHelperServer{})
		mu.Lock()
		server = s
		mu.Unlock()
		return s
	}
	id := c.broker.NextId()
	go c.broker.AcceptAndServe(id, newServer)
	_, err := c.client.Put(context.Background(), &counterpb.PutRequest{AddServer: id, Key: key, Value: value})
	mu.Lock()
	if server != nil {
		server.Stop()
	}
	mu.Unlock()
	return err
}

func runCounter(o *options) (map[string]float64, error) {
	client := newClientWith(o, plugin.PluginSet{"counter": &counterPlugin{}})
	defer client.Kill()
	rpc, err := client.Client()
	if err != nil {
		return nil, err
	}
	raw, err := rpc.Dispense("counter")
	if err != nil {
		return nil, err
	}
	c := raw.(*counter)
	refused := 0
	// go-plugin's multiplexed broker refuses a knock that arrives before the goroutine
	// running AcceptAndServe has registered the id ("no listener for id N"), which happens
	// now and then on a loaded machine: such a call is made again, on a fresh id, and the
	// failed attempt counts in its time (what a go-plugin host in this shape sees).
	put := func() error {
		for attempt := 0; ; attempt++ {
			err := c.put("counter", 1)
			if err == nil || attempt == 5 || !strings.Contains(err.Error(), "no listener for id") {
				return err
			}
			refused++
		}
	}
	for i := 0; i < o.warmup; i++ {
		if err := put(); err != nil {
			return nil, err
		}
	}
	samples := make([]time.Duration, 0, o.calls)
	for i := 0; i < o.calls; i++ {
		t := time.Now()
		if err := put(); err != nil {
			return nil, err
		}
		samples = append(samples, time.Since(t))
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	return map[string]float64{
		"p50_ns":        float64(percentile(samples, 50)),
		"p99_ns":        float64(percentile(samples, 99)),
		"knock_refused": float64(refused),
	}, nil
}

func newClient(o *options) *plugin.Client {
	return newClientWith(o, plugin.PluginSet{"kv_grpc": &kvPlugin{}})
}

func newClientWith(o *options, plugins plugin.PluginSet) *plugin.Client {
	return plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:     handshake,
		Plugins:             plugins,
		Cmd:                 exec.Command(o.plugin),
		AllowedProtocols:    []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:              hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: os.Stderr, Level: hclog.Warn}),
		SyncStdout:          io.Discard,
		SyncStderr:          io.Discard,
		GRPCBrokerMultiplex: o.mux,
		AutoMTLS:            o.mtls,
	})
}

func dispense(c *plugin.Client) (kvpb.KVClient, error) {
	rpc, err := c.Client()
	if err != nil {
		return nil, err
	}
	raw, err := rpc.Dispense("kv_grpc")
	if err != nil {
		return nil, err
	}
	return raw.(kvpb.KVClient), nil
}

func percentile(sorted []time.Duration, p int) int64 {
	if len(sorted) == 0 {
		return 0
	}
	return int64(sorted[len(sorted)*p/100])
}

func runGet(o *options) (map[string]float64, error) {
	// Caller c calls plugin c % plugins.
	kvs := make([]kvpb.KVClient, 0, o.plugins)
	for p := 0; p < o.plugins; p++ {
		client := newClient(o)
		defer client.Kill()
		kv, err := dispense(client)
		if err != nil {
			return nil, err
		}
		kvs = append(kvs, kv)
	}
	ctx := context.Background()
	req := &kvpb.GetRequest{Key: o.key}
	for i := 0; i < o.warmup; i++ {
		if _, err := kvs[i%len(kvs)].Get(ctx, req); err != nil {
			return nil, err
		}
	}
	samples := make([]time.Duration, o.calls)
	var bytes int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < o.callers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			kv := kvs[c%len(kvs)]
			var n int64
			for i := c; i < o.calls; i += o.callers {
				t := time.Now()
				resp, err := kv.Get(ctx, req)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				samples[i] = time.Since(t)
				n += int64(len(resp.Value))
			}
			mu.Lock()
			bytes += n
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if firstErr != nil {
		return nil, firstErr
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	return map[string]float64{
		"p50_ns":      float64(percentile(samples, 50)),
		"p99_ns":      float64(percentile(samples, 99)),
		"calls_per_s": float64(o.calls) / elapsed,
		"bytes_per_s": float64(bytes) / elapsed,
	}, nil
}

func runLaunch(o *options) (map[string]float64, error) {
	first := make([]time.Duration, 0, o.reps)
	kill := make([]time.Duration, 0, o.reps)
	for r := 0; r < o.reps; r++ {
		t0 := time.Now()
		client := newClient(o)
		kv, err := dispense(client)
		if err == nil {
			_, err = kv.Get(context.Background(), &kvpb.GetRequest{Key: "small"})
		}
		if err != nil {
			client.Kill()
			return nil, err
		}
		t1 := time.Now()
		client.Kill()
		kill = append(kill, time.Since(t1))
		first = append(first, t1.Sub(t0))
	}
	sort.Slice(first, func(i, j int) bool { return first[i] < first[j] })
	sort.Slice(kill, func(i, j int) bool { return kill[i] < kill[j] })
	return map[string]float64{
		"first_call_ns": float64(percentile(first, 50)),
		"kill_ns":       float64(percentile(kill, 50)),
	}, nil
}

// usage returns this process's resident set size in bytes and its number of open fds.
func usage() (float64, float64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	var kib float64 = -1
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err = strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				return 0, 0, err
			}
		}
	}
	if kib < 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/self/status")
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, 0, err
	}
	return kib * 1024, float64(len(fds)), nil
}

func runIdle(o *options) (map[string]float64, error) {
	rss0, fds0, err := usage()
	if err != nil {
		return nil, err
	}
	held := make([]*plugin.Client, 0, o.clients)
	defer func() {
		var wg sync.WaitGroup
		for _, c := range held {
			wg.Add(1)
			go func(c *plugin.Client) { defer wg.Done(); c.Kill() }(c)
		}
		wg.Wait()
	}()
	for i := 0; i < o.clients; i++ {
		client := newClient(o)
		held = append(held, client)
		kv, err := dispense(client)
		if err == nil {
			_, err = kv.Get(context.Background(), &kvpb.GetRequest{Key: "small"})
		}
		if err != nil {
			return nil, err
		}
	}
	// Let connection set-up goroutines finish before sampling.
	time.Sleep(200 * time.Millisecond)
	rss1, fds1, err := usage()
	if err != nil {
		return nil, err
	}
	n := float64(o.clients)
	return map[string]float64{
		"rss_per_client_bytes": (rss1 - rss0) / n,
		"fds_per_client":       (fds1 - fds0) / n,
	}, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench-go-host get|launch --plugin PATH [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	var o options
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	fs.StringVar(&o.plugin, "plugin", "", "plugin executable")
	fs.BoolVar(&o.mux, "mux", false, "GRPCBrokerMultiplex")
	fs.BoolVar(&o.mtls, "mtls", false, "AutoMTLS")
	fs.StringVar(&o.key, "key", "small", "key to Get")
	fs.IntVar(&o.warmup, "warmup", 200, "untimed calls")
	fs.IntVar(&o.calls, "calls", 3000, "timed calls")
	fs.IntVar(&o.callers, "callers", 1, "concurrent callers")
	fs.IntVar(&o.reps, "reps", 10, "launches")
	fs.IntVar(&o.clients, "clients", 100, "idle clients")
	fs.IntVar(&o.plugins, "plugins", 1, "plugins the get callers share (caller c calls plugin c % plugins)")
	_ = fs.Parse(os.Args[2:])
	var out map[string]float64
	var err error
	switch mode {
	case "get":
		out, err = runGet(&o)
	case "launch":
		out, err = runLaunch(&o)
	case "idle":
		out, err = runIdle(&o)
	case "counter":
		out, err = runCounter(&o)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %s\n", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}
