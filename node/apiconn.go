package node

// The local API's connections are bounded, so that a client that opens
// connections and leaves them idle (a buggy platform leaking keep-alives,
// or a local process doing it on purpose) cannot exhaust the daemon's file
// handles: the exam platform, the CLI and new libp2p peers need them too.
//
//   - At most Config.APIMaxConnections connections are open at once
//     (DefaultAPIMaxConnections, and never more than half the process's
//     open-file limit). A connection accepted at the cap makes room by
//     closing the connection idle the longest: first one that never
//     authenticated (never sent the bearer token; a fresh connection that
//     has not sent a request yet counts as idle), else an authenticated
//     one. Connections inside a request (a write, a long poll, an event
//     stream) are never closed to make room; when every one is, the new
//     connection is closed at once.
//   - A connection that never authenticated may stay idle, or take to send
//     a request's header, at most apiUnauthIdle; an authenticated one is
//     kept idle for apiIdleTimeout. A refusal (401) closes its connection.
//   - A request's header is at most apiMaxHeaderBytes and must arrive
//     within apiReadHeaderTimeout; its body must arrive within
//     apiBodyTimeout (apiUploadTimeout for an attachment). There is no
//     write timeout: the change feed's long poll and event stream answer
//     for as long as the client listens.

import (
	"container/list"
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultAPIMaxConnections caps the local API's open connections unless
// Config.APIMaxConnections says otherwise. An exam platform needs a few
// dozen (a pool, a long poll or event stream per follower); each open
// connection costs a file and some 30-70 KiB.
const DefaultAPIMaxConnections = 1024

const (
	apiReadHeaderTimeout = 10 * time.Second
	apiIdleTimeout       = 2 * time.Minute
	apiUnauthIdle        = 5 * time.Second
	apiBodyTimeout       = time.Minute
	apiUploadTimeout     = 15 * time.Minute
	apiMaxHeaderBytes    = 64 << 10
)

// apiMaxConns is the connection cap: the configured one, at most half the
// open-file limit (the rest is for the store and the mesh).
func apiMaxConns(configured int) int {
	c := configured
	if c <= 0 {
		c = DefaultAPIMaxConnections
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur > 0 && lim.Cur != ^uint64(0) {
		c = min(c, max(int(lim.Cur/2), 16))
	}
	return c
}

// connLimiter is the API's listener: it tracks every connection it
// accepted and closes idle ones to stay within max.
type connLimiter struct {
	net.Listener
	max    int
	unauth time.Duration

	mu     sync.Mutex
	open   int
	idleU  list.List // *apiConn idle (or new) and never authenticated, oldest first
	idleA  list.List // *apiConn idle and authenticated, oldest first
	closed bool

	evicted, refused atomic.Uint64
}

// apiConn is one accepted connection.
type apiConn struct {
	net.Conn
	l      *connLimiter
	authed atomic.Bool
	elem   *list.Element // in l.idleU or l.idleA, nil while active; under l.mu
	in     *list.List
	// gone is set once the connection is counted out of l.open, by its
	// Close or by an eviction, whichever comes first.
	gone atomic.Bool
}

func newConnLimiter(ln net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: ln, max: max, unauth: apiUnauthIdle}
}

// Accept returns the next connection, making room for it first.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ac := &apiConn{Conn: c, l: l}
		l.mu.Lock()
		var victims []*apiConn
		for l.open >= l.max {
			v := l.oldestIdle()
			if v == nil {
				break
			}
			l.unlink(v)
			if v.gone.CompareAndSwap(false, true) {
				l.open-- // counted out now; its Close does not count again
				victims = append(victims, v)
			} // else its Close, under way, counts it out
		}
		full := l.open >= l.max
		if !full {
			l.open++
			ac.elem, ac.in = l.idleU.PushBack(ac), &l.idleU
		}
		l.mu.Unlock()
		for _, v := range victims {
			l.evicted.Add(1)
			_ = v.Conn.Close()
		}
		if full {
			l.refused.Add(1)
			_ = c.Close()
			continue
		}
		return ac, nil
	}
}

func (l *connLimiter) oldestIdle() *apiConn {
	if e := l.idleU.Front(); e != nil {
		return e.Value.(*apiConn)
	}
	if e := l.idleA.Front(); e != nil {
		return e.Value.(*apiConn)
	}
	return nil
}

// unlink removes c from its idle list; l.mu is held.
func (l *connLimiter) unlink(c *apiConn) {
	if c.elem != nil {
		c.in.Remove(c.elem)
		c.elem, c.in = nil, nil
	}
}

// connState is the server's ConnState hook.
func (l *connLimiter) connState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*apiConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateActive, http.StateHijacked, http.StateClosed:
		l.unlink(c)
	case http.StateIdle:
		l.unlink(c)
		if c.gone.Load() {
			return // evicted already
		}
		if c.authed.Load() {
			c.elem, c.in = l.idleA.PushBack(c), &l.idleA
		} else {
			c.elem, c.in = l.idleU.PushBack(c), &l.idleU
		}
	}
}

// Open is the number of connections open now.
func (l *connLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// SetReadDeadline keeps a connection that never authenticated from
// waiting longer than the limiter's unauthenticated idle time (the server
// sets its idle and header deadlines through here).
func (c *apiConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && !c.authed.Load() {
		if lim := time.Now().Add(c.l.unauth); t.After(lim) {
			t = lim
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline applies SetReadDeadline's limit too.
func (c *apiConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *apiConn) Close() error {
	c.l.mu.Lock()
	c.l.unlink(c)
	if c.gone.CompareAndSwap(false, true) {
		c.l.open--
	}
	c.l.mu.Unlock()
	return c.Conn.Close()
}

type apiConnKey struct{}

// connContext is the server's ConnContext hook: handlers find their
// connection (to mark it authenticated) in the request's context.
func connContext(ctx context.Context, nc net.Conn) context.Context {
	if c, ok := nc.(*apiConn); ok {
		return context.WithValue(ctx, apiConnKey{}, c)
	}
	return ctx
}

// markAuthenticated records that r's connection presented the token.
func markAuthenticated(r *http.Request) {
	if c, ok := r.Context().Value(apiConnKey{}).(*apiConn); ok {
		c.authed.Store(true)
	}
}

// refuseConn makes the connection of a refused request close after the
// answer, and gives what is left of its body a short deadline.
func refuseConn(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(apiUnauthIdle))
}

// bodyDeadline gives an authenticated request's body its deadline: an
// attachment may be large, the rest are small. A request without a body
// gets none (a long poll reads nothing).
func bodyDeadline(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	d := apiBodyTimeout
	if strings.HasPrefix(r.URL.Path, "/v1/attachments/") {
		d = apiUploadTimeout
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
}
