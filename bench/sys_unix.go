//go:build unix

package bench

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// peakRSSKiB returns a finished process's peak resident set in KiB.
func peakRSSKiB(ps *os.ProcessState) int64 {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return 0
	}
	if runtime.GOOS == "darwin" { // bytes there, KiB on Linux and the BSDs
		return int64(ru.Maxrss) / 1024
	}
	return int64(ru.Maxrss)
}

// diskBytes returns the space the files under dir take on disk: allocated
// blocks, not apparent sizes, since badger's files are sparse.
func diskBytes(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				total += int64(st.Blocks) * 512
			}
		}
		return nil
	})
	return total
}
