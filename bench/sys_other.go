//go:build !unix

package bench

import (
	"io/fs"
	"os"
	"path/filepath"
)

// peakRSSKiB is unknown on this platform.
func peakRSSKiB(*os.ProcessState) int64 { return 0 }

// diskBytes returns the apparent size of the files under dir.
func diskBytes(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}
