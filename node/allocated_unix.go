//go:build unix

package node

import (
	"io/fs"
	"syscall"
)

// allocated is the disk space a file occupies (its blocks), which for a
// sparse file is less than its length.
func allocated(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Blocks) * 512
	}
	return uint64(fi.Size())
}
