package node

// Profiling: with "pprof": true in config.json the local API serves
// net/http/pprof's handlers under /debug/pprof/, on the API's own mux and
// behind its bearer token like every other route; without it every path
// there answers 404 pprof_off. The handlers are registered one by one:
// nothing serves http.DefaultServeMux (on which importing net/http/pprof
// also registers them), so they are reachable only through the API.
//
// A profile or trace lasts for as long as its seconds parameter says, at
// most maxProfileSeconds. Nothing cuts it short: the API has no write
// timeout, a request without a body gets no body deadline (apiconn.go),
// and the connection cap never closes a connection inside a request. Only
// the node's Close does: it ends the profile early, and the client gets
// what was recorded so far, so that a running profile does not hold up a
// shutdown.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"strconv"
)

// maxProfileSeconds bounds the seconds parameter of the profiling routes.
const maxProfileSeconds = 60

// pprofProfiles are the runtime's named profiles, each served by
// pprof.Handler(name); any other name goes through pprof.Index, which
// serves a profile registered later or answers 404.
var pprofProfiles = []string{"allocs", "block", "goroutine", "heap", "mutex", "threadcreate"}

// ErrPprofOff is the answer of the profiling routes on a node without
// "pprof".
var ErrPprofOff = errors.New("the profiling routes are off")

// pprofRoutes registers /debug/pprof/ on mux (behind auth).
func (n *Node) pprofRoutes(mux *http.ServeMux) {
	if !n.cfg.Pprof {
		mux.HandleFunc("/debug/pprof", n.handlePprofOff)
		mux.HandleFunc("/debug/pprof/", n.handlePprofOff)
		return
	}
	mux.HandleFunc("GET /debug/pprof/", n.pprofRoute(pprof.Index, true))
	mux.HandleFunc("GET /debug/pprof/cmdline", n.pprofRoute(pprof.Cmdline, true))
	mux.HandleFunc("GET /debug/pprof/profile", n.pprofRoute(pprof.Profile, true))
	mux.HandleFunc("GET /debug/pprof/symbol", n.pprofRoute(pprof.Symbol, true))
	mux.HandleFunc("POST /debug/pprof/symbol", n.pprofRoute(pprof.Symbol, true))
	mux.HandleFunc("GET /debug/pprof/trace", n.pprofRoute(pprof.Trace, false))
	for _, name := range pprofProfiles {
		mux.HandleFunc("GET /debug/pprof/"+name, n.pprofRoute(pprof.Handler(name).ServeHTTP, true))
	}
}

// pprofRoute bounds h's seconds parameter (a whole number if whole;
// pprof.Trace takes fractions too) and ends h's request when the node
// closes.
func (n *Node) pprofRoute(h http.HandlerFunc, whole bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s := r.URL.Query().Get("seconds"); s != "" {
			if err := checkProfileSeconds(s, whole); err != nil {
				writeErr(w, http.StatusBadRequest, "invalid", err)
				return
			}
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(n.ctx, cancel)()
		h(w, r.WithContext(ctx))
	}
}

func checkProfileSeconds(s string, whole bool) error {
	what := "a number of seconds"
	if whole {
		what = "a whole number of seconds"
	}
	bad := fmt.Errorf("seconds=%q: want %s from 1 to %d (a longer profile: take several)", s, what, maxProfileSeconds)
	if whole {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > maxProfileSeconds {
			return bad
		}
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || v <= 0 || v > maxProfileSeconds {
		return fmt.Errorf("seconds=%q: want %s above 0, at most %d (a longer trace: take several)", s, what, maxProfileSeconds)
	}
	return nil
}

func (n *Node) handlePprofOff(w http.ResponseWriter, r *http.Request) {
	writeErr(w, http.StatusNotFound, "pprof_off",
		fmt.Errorf("%w: a profile shows the daemon's code and, in goroutine dumps, its call arguments, so the routes exist only with \"pprof\": true in %s and a restart",
			ErrPprofOff, filepath.Join(n.dir, ConfigFile)))
}
