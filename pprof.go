package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// pprofServer serves Go's runtime profiles (net/http/pprof) to operators on
// a listener of its own, PPROF_ADDR. Its handlers are registered on a mux of
// their own rather than imported for their side effect on
// http.DefaultServeMux, so that the public listener can never answer
// /debug/pprof: a profile shows the code, the goroutines and the heap.
type pprofServer struct {
	srv    *http.Server
	served chan error
}

// startPprof listens on addr and serves the profiles there until stop.
func startPprof(addr string, log *slog.Logger) (*pprofServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("PPROF_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // the index, and every named profile: heap, goroutine, block, mutex, allocs...
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	p := &pprofServer{
		// No WriteTimeout: /debug/pprof/profile?seconds=30 writes for as long as it was asked to.
		srv:    &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		served: make(chan error, 1),
	}
	go func() { p.served <- p.srv.Serve(ln) }()
	log.Warn("pprof listening: profiles of this process are served to whoever reaches this address", "addr", ln.Addr().String())
	return p, nil
}

// stop closes the listener and every connection at once: a profile being
// taken is cut short rather than holding up the shutdown.
func (p *pprofServer) stop(log *slog.Logger) {
	err := p.srv.Close()
	if served := <-p.served; !errors.Is(served, http.ErrServerClosed) {
		err = errors.Join(err, served)
	}
	if err != nil {
		log.Warn("pprof listener", "error", err.Error())
	}
}
