package crdt

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// classify turns a full disk into ErrDiskFull, keeping the original error
// in the chain.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left on device") {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return err
}

func isLockErr(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot acquire directory lock") || strings.Contains(s, "resource temporarily unavailable")
}
