package bench

import (
	"flag"
	"fmt"
	"strconv"
	"time"
)

// Params sizes the workloads. The zero value of a field means its default.
type Params struct {
	// Records is N, the number of records a workload writes (default
	// 10,000).
	Records int `json:"records"`
	// ValueSize is the size of each value in bytes (default 1 KiB).
	// Values are random, hence incompressible, like sealed results.
	ValueSize int `json:"value_size"`
	// Writers is how many goroutines put records one at a time, per
	// writing node (default 32).
	Writers int `json:"writers"`
	// BatchSize is the number of records per PutBatch (default 100).
	BatchSize int `json:"batch_size"`
	// PerNode is how many records each node writes in converge-three
	// (default 3,000).
	PerNode int `json:"per_node"`
	// Timeout bounds one workload run, setup included (default 10 min).
	Timeout time.Duration `json:"timeout"`
	// Poll is the shortest interval between two Count calls while
	// waiting for replication (default 25 ms). The harness waits at least
	// twice as long as the last Count took, so that polling never takes
	// more than a third of the time.
	Poll time.Duration `json:"poll"`
}

// Defaults for Params.
const (
	DefaultRecords   = 10_000
	DefaultValueSize = 1024
	DefaultWriters   = 32
	DefaultBatchSize = 100
	DefaultPerNode   = 3_000
	DefaultTimeout   = 10 * time.Minute
	DefaultPoll      = 25 * time.Millisecond
)

// withDefaults fills zero fields and rejects negative or useless values.
func (p Params) withDefaults() (Params, error) {
	fill := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	fill(&p.Records, DefaultRecords)
	fill(&p.ValueSize, DefaultValueSize)
	fill(&p.Writers, DefaultWriters)
	fill(&p.BatchSize, DefaultBatchSize)
	fill(&p.PerNode, DefaultPerNode)
	if p.Timeout == 0 {
		p.Timeout = DefaultTimeout
	}
	if p.Poll == 0 {
		p.Poll = DefaultPoll
	}
	switch {
	case p.Records < 10:
		return p, fmt.Errorf("%w: records is %d; use at least 10 (catchup-overwrite writes records/10 keys)", ErrBadParams, p.Records)
	case p.ValueSize < 0, p.Writers < 0, p.BatchSize < 0, p.PerNode < 0:
		return p, fmt.Errorf("%w: value size, writers, batch size and per-node records must be positive", ErrBadParams)
	case p.Timeout < 0, p.Poll < 0:
		return p, fmt.Errorf("%w: timeout and poll interval must be positive", ErrBadParams)
	}
	return p, nil
}

// bindFlags declares one flag per field on fs, writing into p.
func (p *Params) bindFlags(fs *flag.FlagSet) {
	fs.IntVar(&p.Records, "records", p.Records, "records N each workload writes")
	fs.IntVar(&p.ValueSize, "value-size", p.ValueSize, "value size in bytes")
	fs.IntVar(&p.Writers, "writers", p.Writers, "concurrent one-at-a-time writers per node")
	fs.IntVar(&p.BatchSize, "batch", p.BatchSize, "records per batch")
	fs.IntVar(&p.PerNode, "per-node", p.PerNode, "records each node writes in converge-three")
	fs.DurationVar(&p.Timeout, "timeout", p.Timeout, "timeout of one workload run")
	fs.DurationVar(&p.Poll, "poll", p.Poll, "shortest interval between Count polls")
}

// args renders p as the flags bindFlags parses.
func (p Params) args() []string {
	return []string{
		"--records", strconv.Itoa(p.Records),
		"--value-size", strconv.Itoa(p.ValueSize),
		"--writers", strconv.Itoa(p.Writers),
		"--batch", strconv.Itoa(p.BatchSize),
		"--per-node", strconv.Itoa(p.PerNode),
		"--timeout", p.Timeout.String(),
		"--poll", p.Poll.String(),
	}
}
