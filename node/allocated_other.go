//go:build !unix

package node

import "io/fs"

// allocated is the file's length where the system does not report blocks.
func allocated(fi fs.FileInfo) uint64 { return uint64(fi.Size()) }
