package bench

import "errors"

// Errors callers can branch on with errors.Is.
var (
	ErrUnknownStack    = errors.New("bench: unknown stack")
	ErrUnknownWorkload = errors.New("bench: unknown workload")
	ErrBadParams       = errors.New("bench: bad parameters")
	ErrClosed          = errors.New("bench: stack is closed")
	ErrNoNode          = errors.New("bench: no such node")
	ErrChild           = errors.New("bench: child process failed")
)
